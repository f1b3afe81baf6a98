"""The Any-to-Bokeh model as a renderer: working size, weighted overlap inference (§3.5), native output.

A video of any length and size is rendered in five steps:

1. frames and disparity are resized to the working size (the paper's 1024 x 576 area, the aspect kept,
   multiples of the model's `size_multiple`); K is scaled to the working width (`resolution.k_pixels`);
2. the UNet runs on overlapping windows of `window` frames; their bokeh latents are blended with the
   cosine weights of eq. 7 (`weighted_overlap`), so there is no seam between windows;
3. the blended latents are decoded window by window, each with the VAE encoder skips of its own
   all-in-focus frames (stage 3), and the decoded windows are blended with the same weights; decoding
   in windows keeps the temporal decoder's memory bounded (576 x 1024 fits in 16 GB);
4. the render is brought back to the input's size, with the input's own detail where it is in focus
   (`resolution.to_native`).

On a GPU the weights run in bf16 or fp16 (`dtype`); the blending runs in float32.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from any2bokeh.inference.overlap import overlap_windows, weighted_overlap
from any2bokeh.inference.renderers import (
    Renderer,
    as_unit_float,
    like_input,
    native_radius,
)
from any2bokeh.inference.resolution import (
    PAPER_AREA,
    k_pixels,
    resize,
    to_native,
    working_size,
)


def load_model(path: str | os.PathLike, svd: str | os.PathLike | None = None):
    """An AnyToBokeh from a Lightning checkpoint (.ckpt), a folder written by `save_pretrained`, or the
    authors' released weights (a folder with `unet/unet/` and `vae/`; CLIP then comes from the SVD folder `svd`)."""
    from any2bokeh.models import AnyToBokeh
    from any2bokeh.models.release_weights import is_release_folder

    path = Path(path).expanduser()
    if path.is_dir() and is_release_folder(path):
        return AnyToBokeh.from_release(path, svd)
    if path.is_dir():
        return AnyToBokeh.from_pretrained(path)
    if path.is_file():
        return AnyToBokeh.from_checkpoint(path)
    raise FileNotFoundError(
        f"model weights not found: {os.fspath(path)!r} is neither a .ckpt file, a saved model folder nor the "
        "authors' release folder"
    )


def model_dtype(device: torch.device, precision: str | None) -> torch.dtype:
    """The weights' dtype for a Lightning precision string: bf16 or fp16 on a GPU, float32 on the CPU."""
    if device.type != "cuda" or precision is None:
        return torch.float32
    precision = str(precision)
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return torch.float32


class ModelRenderer(Renderer):
    """Render with an `AnyToBokeh` model; see the module docstring.

    Args:
        model: the network (moved to `device` and `dtype` by `to`).
        window, overlap: frames per UNet call and frames shared by neighbouring windows (§4: 8 and 4).
        area: the working area in pixels.
        sharp_radius, fade: the native-detail weight (`resolution.detail_weight`).
        chunk_frames: frames per step when bringing the render back to the input's size.
    """

    name = "model"

    def __init__(
        self,
        model,
        window: int = 8,
        overlap: int = 4,
        area: int = PAPER_AREA,
        sharp_radius: float = 0.5,
        fade: float = 1.0,
        chunk_frames: int = 4,
        path: str | None = None,
    ) -> None:
        if window < 1 or not 0 <= overlap < window:
            raise ValueError(f"need window >= 1 and 0 <= overlap < window, got window={window}, overlap={overlap}")
        self.model = model.eval().requires_grad_(False)
        self.window, self.overlap, self.area = int(window), int(overlap), int(area)
        self.sharp_radius, self.fade, self.chunk_frames = sharp_radius, fade, int(chunk_frames)
        self.path = path
        # untrained skip convs are zero (§3.4 stage 3 trains them): then the decoder needs no encoder skips
        self.use_skips = any(bool(p.detach().abs().max() > 0) for p in model.vae.skip_convs.parameters())

    @classmethod
    def from_path(
        cls, path: str | os.PathLike | None = None, svd: str | os.PathLike | None = None, **options: Any
    ) -> "ModelRenderer":
        """Load the model from `path` (a .ckpt, a saved folder or the authors' release, which needs the SVD
        folder `svd` for CLIP); `options` as in `__init__`."""
        if path is None:
            raise ValueError(
                "renderer=model needs renderer.path=<a Lightning .ckpt, a save_pretrained folder or the authors' "
                "release folder>"
            )
        return cls(load_model(path, svd), path=os.fspath(path), **options)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def to(self, device: torch.device | str, precision: str | None = None) -> "ModelRenderer":
        device = torch.device(device)
        self.model.to(device=device, dtype=model_dtype(device, precision))
        return self

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "window": self.window,
            "overlap": self.overlap,
            "area": self.area,
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "model": self.model.config,
        }

    @torch.no_grad()
    def render(self, frames, disparity, disp_focus, k, progress: Callable | None = None) -> Tensor:
        model, device = self.model, self.model.device
        num_frames, _, height, width = frames.shape
        size = working_size(height, width, self.area, multiple=model.size_multiple, upscale=True)
        # the working-size clip, one batch element: aif [1, T, 3, h, w] in [-1, 1], disparity [1, T, 1, h, w]
        aif = torch.cat(
            [
                resize(as_unit_float(frames[t : t + self.chunk_frames], device), size)
                for t in range(0, num_frames, self.chunk_frames)
            ]
        )
        aif = (aif.clamp(0, 1) * 2 - 1).to(model.dtype)[None]
        disp = resize(disparity.to(device).float(), size).clamp(0, 1)[None]
        d_f = disp_focus.to(device)[None]
        k_work = k_pixels(k.to(device), size[1])[None]

        def unet_window(aif: Tensor, disparity: Tensor, disp_focus: Tensor, k: Tensor) -> Tensor:
            return model.predict_latents(aif, disparity, disp_focus, k).float()

        def decode_window(latents: Tensor, aif: Tensor) -> Tensor:
            skips = model.encode_with_skips(aif).skips if self.use_skips else None
            return model.decode(latents.to(model.dtype), skips=skips).float()

        # two passes over the same windows: the UNet, then the decoder
        passes = 2 * len(overlap_windows(num_frames, self.window, self.overlap))
        report = (lambda done, total: None) if progress is None else progress
        latents = weighted_overlap(
            unet_window,
            aif,
            self.window,
            self.overlap,
            context={"disparity": disp, "disp_focus": d_f, "k": k_work},
            progress=lambda done, total: report(done, passes),
        )
        rendered = weighted_overlap(
            decode_window,
            latents,
            self.window,
            self.overlap,
            context={"aif": aif},
            progress=lambda done, total: report(passes // 2 + done, passes),
        )[0]
        rendered = ((rendered + 1) / 2).clamp(0, 1)  # [T, 3, h, w] in [0, 1]

        out = torch.empty_like(frames)
        for start in range(0, num_frames, self.chunk_frames):
            chunk = slice(start, min(start + self.chunk_frames, num_frames))
            native = as_unit_float(frames[chunk], device)
            radius = native_radius(
                disparity[chunk].to(device), disp_focus[chunk].to(device), k[chunk].to(device), (height, width)
            )
            out[chunk] = like_input(to_native(native, rendered[chunk], radius, self.sharp_radius, self.fade), frames)
        return out
