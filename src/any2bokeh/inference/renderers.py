"""One interface for every way of refocusing a video: frames, disparity, d_f and K curves -> frames.

`predict.py` renders with one of these, and an evaluation compares them as its "methods":

- `IdentityRenderer`: returns the input (the all-in-focus baseline);
- `ClassicalRenderer`: the weightless thin-lens renderer of a disparity map (`any2bokeh.optics`);
- `ModelRenderer` (`model_renderer.py`): the one-step Any-to-Bokeh model (§3) with weighted overlap
  inference (§3.5).

Every renderer takes K in the paper's unit (pixels per unit of normalised disparity at 1024 px width)
and frames of any size, and returns frames of the input's size (see `resolution.py`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from any2bokeh.inference.resolution import (
    PAPER_AREA,
    k_pixels,
    resize,
    to_native,
    working_size,
)

# range checks admit resampling overshoot
TOLERANCE = 1e-3


def _first_frame(bad: Tensor) -> int:
    return int(bad.nonzero()[0, 0])


def check_render_inputs(frames: Tensor, disparity: Tensor, disp_focus: Tensor, k: Tensor) -> Tensor:
    """Validate renderer inputs with errors that name the value and the frame; returns disparity [T, 1, h, w]."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be [T, 3, H, W], got shape {tuple(frames.shape)}")
    if frames.dtype != torch.uint8 and not frames.is_floating_point():
        raise ValueError(f"frames must be uint8 or float in [0, 1], got {frames.dtype}")
    num_frames = frames.shape[0]
    if disparity.ndim == 3:
        # disparity: [T, h, w] -> [T, 1, h, w]
        disparity = disparity[:, None]
    if disparity.ndim != 4 or disparity.shape[:2] != (num_frames, 1):
        raise ValueError(
            f"disparity must be [{num_frames}, 1, h, w] for {num_frames} frames, got {tuple(disparity.shape)}"
        )
    for name, curve in (("d_f", disp_focus), ("K", k)):
        if curve.shape != (num_frames,):
            raise ValueError(
                f"the {name} curve must have one value per frame ({num_frames}), got shape {tuple(curve.shape)}"
            )
        if not torch.isfinite(curve).all():
            raise ValueError(f"{name} is not finite on frame {_first_frame(~torch.isfinite(curve))}")
    if (k < 0).any():
        t = _first_frame(k < 0)
        raise ValueError(f"K must be >= 0, got K={float(k[t]):.4g} on frame {t}")
    outside = (disp_focus < 0) | (disp_focus > 1)
    if outside.any():
        t = _first_frame(outside)
        raise ValueError(f"d_f must lie in [0, 1] (normalised disparity), got {float(disp_focus[t]):.4g} on frame {t}")
    finite = torch.isfinite(disparity.flatten(1)).all(1)
    if not finite.all():
        raise ValueError(f"disparity has NaN or inf values on frame {_first_frame(~finite)}")
    low, high = float(disparity.min()), float(disparity.max())
    if low < -TOLERANCE or high > 1 + TOLERANCE:
        raise ValueError(f"disparity must be normalised to [0, 1], got values in [{low:.4g}, {high:.4g}]")
    return disparity


def as_unit_float(frames: Tensor, device: torch.device | None = None) -> Tensor:
    """uint8 or float frames as float32 in [0, 1] on `device`."""
    frames = frames.to(device)
    return frames.float() / 255 if frames.dtype == torch.uint8 else frames.float()


def like_input(frames: Tensor, like: Tensor) -> Tensor:
    """Float frames in [0, 1] in the dtype and device of the renderer's input (uint8 is rounded)."""
    frames = frames.clamp(0, 1)
    if like.dtype == torch.uint8:
        return (frames * 255).round().to(like.device, torch.uint8)
    return frames.to(like.device, like.dtype)


class Renderer(ABC):
    """frames [T, 3, H, W] (uint8, or float in [0, 1]); disparity [T, 1, h, w] in [0, 1] at any size (1 = nearest);
    d_f [T] in [0, 1]; K [T] >= 0 in pixels per unit of disparity at 1024 px width -> frames [T, 3, H, W] of the
    input's dtype and device.

    progress: an optional callable `progress(done, total)` told how far the render is.
    """

    name = "renderer"
    #: renders a known subject mask as its own in-focus layer (`matte=` of a call); others ignore a matte
    supports_matte = False

    def __call__(
        self,
        frames: Tensor,
        disparity: Tensor,
        disp_focus: Tensor,
        k: Tensor,
        progress: Callable[[int, int], None] | None = None,
        matte: Tensor | None = None,
    ) -> Tensor:
        disp_focus = torch.as_tensor(disp_focus, dtype=torch.float32).flatten()
        k = torch.as_tensor(k, dtype=torch.float32).flatten()
        if disp_focus.numel() == 1:
            disp_focus = disp_focus.expand(frames.shape[0])
        if k.numel() == 1:
            k = k.expand(frames.shape[0])
        disparity = check_render_inputs(frames, disparity, disp_focus, k)
        if matte is not None and self.supports_matte:
            matte = torch.as_tensor(matte, dtype=torch.float32)
            matte = matte[:, None] if matte.ndim == 3 else matte
            if matte.ndim != 4 or matte.shape[:2] != (frames.shape[0], 1):
                raise ValueError(
                    f"matte must be [T, 1, h, w] or [T, h, w] for {frames.shape[0]} frames, got {tuple(matte.shape)}"
                )
            return self.render(frames, disparity, disp_focus, k, progress, matte=matte.clamp(0, 1))
        return self.render(frames, disparity, disp_focus, k, progress)

    @abstractmethod
    def render(
        self, frames: Tensor, disparity: Tensor, disp_focus: Tensor, k: Tensor, progress: Callable | None
    ) -> Tensor: ...

    def info(self) -> dict[str, Any]:
        """What this renderer is, for the sidecar of a rendered video."""
        return {"name": self.name}

    @property
    def device(self) -> torch.device | None:
        """Where it renders (None: where the frames are)."""
        return None

    def to(self, device: torch.device | str, precision: str | None = None) -> "Renderer":
        """Render on `device`; `precision` is Lightning's precision string (used by renderers with weights)."""
        return self


class IdentityRenderer(Renderer):
    """Returns the input unchanged: the all-in-focus baseline."""

    name = "identity"

    def render(self, frames, disparity, disp_focus, k, progress=None) -> Tensor:
        if progress is not None:
            progress(frames.shape[0], frames.shape[0])
        return frames


class ClassicalRenderer(Renderer):
    """The thin-lens renderer of a disparity map, frame by frame, at a working size no larger than the input.

    Inputs larger than `area` pixels are rendered at that area (the aspect kept) with K scaled to the working
    width, and brought back with their native detail where they are in focus (`resolution.to_native`); smaller
    inputs render at their own size.

    Args:
        area: the working area in pixels (None: the paper's 1024 x 576).
        chunk_frames: frames rendered at once.
        sharp_radius, fade: the native-detail weight (`resolution.detail_weight`).
        device: where it renders (None: the frames' device).
        options: keywords of `any2bokeh.optics.render_disparity_map` (e.g. gamma).
    """

    name = "classical"
    supports_matte = True

    def __init__(
        self,
        area: int | None = PAPER_AREA,
        chunk_frames: int = 4,
        sharp_radius: float = 0.5,
        fade: float = 1.0,
        device: torch.device | str | None = None,
        **options: Any,
    ) -> None:
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.area, self.chunk_frames = int(area or PAPER_AREA), int(chunk_frames)
        self.sharp_radius, self.fade = sharp_radius, fade
        self._device = None if device is None else torch.device(device)
        self.options = options

    @property
    def device(self) -> torch.device | None:
        return self._device

    def to(self, device: torch.device | str, precision: str | None = None) -> "ClassicalRenderer":
        self._device = torch.device(device)
        return self

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "area": self.area, **self.options}

    def render_working(self, frames: Tensor, disparity: Tensor, disp_focus: Tensor, k_px: Tensor) -> Tensor:
        """[N, 3, h, w] float frames, [N, 1, h, w] disparity, d_f [N], K [N] in pixels of this size -> [N, 3, h, w]."""
        from any2bokeh.optics import render_disparity_map

        return render_disparity_map(frames, disparity, k_px, disp_focus, **self.options)

    def render(self, frames, disparity, disp_focus, k, progress=None, matte: Tensor | None = None) -> Tensor:
        """`matte` [T, 1, h, w] in [0, 1], the subject's mask at any size: the subject is rendered as its own
        in-focus layer over a background filled behind it (`any2bokeh.optics.matte`)."""
        from any2bokeh.optics.matte import render_with_matte

        num_frames, _, height, width = frames.shape
        size = working_size(height, width, self.area, upscale=False)
        device = self.device or frames.device
        out = torch.empty_like(frames)
        for start in range(0, num_frames, self.chunk_frames):
            chunk = slice(start, min(start + self.chunk_frames, num_frames))
            native = as_unit_float(frames[chunk], device)
            d_f, k_chunk = disp_focus[chunk].to(device), k[chunk].to(device)
            disp = disparity[chunk].to(device).float().clamp(0, 1)
            k_work = k_pixels(k_chunk, size[1])
            work, work_disp = resize(native, size), resize(disp, size).clamp(0, 1)
            radius = native_radius(disp, d_f, k_chunk, (height, width))
            if matte is None:
                rendered = self.render_working(work, work_disp, d_f, k_work)
            else:
                subject = resize(matte[chunk].to(device), size).clamp(0, 1)
                # in front of the focal plane by more than half a pixel of blur: its blur spreads over the subject
                near = ((work_disp - d_f.view(-1, 1, 1, 1)) * k_work.view(-1, 1, 1, 1) > 0.5).float()
                rendered, alpha = render_with_matte(
                    lambda images, disp_map: self.render_working(images, disp_map, d_f, k_work),
                    work,
                    work_disp,
                    subject,
                    near=near,
                )
                # the subject keeps its native detail: no blur radius under the refined matte
                radius = radius * (1 - resize(alpha, (height, width)).clamp(0, 1))
            out[chunk] = like_input(to_native(native, rendered, radius, self.sharp_radius, self.fade), frames)
            if progress is not None:
                progress(chunk.stop, num_frames)
        return out


def native_radius(disparity: Tensor, disp_focus: Tensor, k: Tensor, size: tuple[int, int]) -> Tensor:
    """Blur radius in pixels of a frame of `size` (h, w): K (paper units) scaled to its width times |d - d_f|.

    disparity [N, 1, h', w'] at any size, d_f and K [N] -> [N, 1, h, w].
    """
    disparity = resize(disparity.float(), size).clamp(0, 1)
    return k_pixels(k, size[1]).view(-1, 1, 1, 1) * (disparity - disp_focus.view(-1, 1, 1, 1)).abs()


__all__ = [
    "ClassicalRenderer",
    "IdentityRenderer",
    "Renderer",
    "as_unit_float",
    "check_render_inputs",
    "like_input",
    "native_radius",
]
