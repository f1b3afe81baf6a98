"""The Any-to-Bokeh model as a renderer: working size, weighted overlap inference (§3.5), native output.

A video of any length and size is rendered in five steps:

1. frames and disparity are resized to the working size (by default the area of the clips the model was
   trained on, `options.training_size`, else the paper's 1024 x 576; the aspect kept, multiples of the
   model's `size_multiple`); K is scaled to the working width (`resolution.k_pixels`);
2. the UNet runs on overlapping windows of `window` frames; their bokeh latents are blended with the
   cosine weights of eq. 7 (`OverlapBlend`), so there is no seam between windows;
3. the blended latents are decoded window by window, each with the VAE encoder skips of its own
   all-in-focus frames (stage 3), and the decoded windows are blended with the same weights; decoding
   in windows keeps the temporal decoder's memory bounded (576 x 1024 fits in 16 GB);
4. the render is brought back to the input's size, with the input's own detail where it is in focus
   (`resolution.to_native`).

Steps 2 to 4 are interleaved (`schedule="stream"`): each frame's all-in-focus latents and skip features, V_D
latents and CLIP token are computed once (`EncodedClip`), a window is decoded as soon as its latents are final,
and a frame goes back to the input's size and off the device as soon as its decoded value is final, so a clip
of any length holds a bounded run of frames on the device. On a GPU the weights run in bf16 or fp16 (`dtype`);
the blending runs in float32.

With a subject's matte (`matte=` of a call: a mask folder, SAM or the tracker's region), the matte is refined
against the frame (`optics.matte.refine_matte`) and the subject's disparity pulled to d_f under it,
d' = d + alpha (d_f - d), for the model's MPI regions and V_D image and for the native detail of step 4: the
model is told the subject lies on the focal plane, so all of it keeps its detail.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from any2bokeh.inference.encoded_clip import EncodedClip
from any2bokeh.inference.overlap import OverlapBlend, OverlapWindow, overlap_windows, weighted_overlap
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
from any2bokeh.inference.speed import SpeedSettings, apply_speed_settings


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


logger = logging.getLogger(__name__)
#: a render projected to take longer than this (seconds) is announced with its projected time
ANNOUNCE_SECONDS = 60.0


def model_area(model) -> int:
    """The working area a model renders at by default: its training size's, else the paper's 1024 x 576."""
    size = getattr(getattr(model, "options", None), "training_size", None)
    return int(size[0]) * int(size[1]) if size else PAPER_AREA


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
        area: the working area in pixels (None: `model_area(model)`, the area the model was trained at).
        sharp_radius, fade: the native-detail weight (`resolution.detail_weight`).
        chunk_frames: frames per step when bringing the render back to the input's size.
        schedule: "stream" (each frame encoded once, UNet and decoder interleaved, frames emitted as they are
            final) or "two_pass" (the previous schedule, kept for comparison; the same output to float32 rounding).
        decode: "windows" (the decoder over the UNet's overlapping windows, blended: each frame decoded 1.9 times on
            a long clip) or "chunks" (consecutive chunks of `window` frames, each frame decoded once, as stock SVD
            decodes; off by default until a GPU run shows it adds no seam at the chunk borders).
        phase_upsample, channels_last, cudnn_benchmark, sdpa_backend, compile: the speed switches
            (`any2bokeh.inference.speed`; None: the device's default).
        matte: use a subject's matte handed to a call (see the module docstring); off by default, since the
            trained model renders the subject from the disparity alone.
    """

    name = "model"

    def __init__(
        self,
        model,
        window: int = 8,
        overlap: int = 4,
        area: int | None = None,
        sharp_radius: float = 0.5,
        fade: float = 1.0,
        chunk_frames: int = 4,
        path: str | None = None,
        schedule: str = "stream",
        decode: str = "windows",
        phase_upsample: bool = True,
        channels_last: bool | None = None,
        cudnn_benchmark: bool | None = None,
        sdpa_backend: str | None = None,
        compile: bool = False,
        matte: bool = False,
    ) -> None:
        self.supports_matte = bool(matte)
        if schedule not in ("stream", "two_pass"):
            raise ValueError(f"schedule must be 'stream' or 'two_pass', got {schedule!r}")
        if decode not in ("windows", "chunks") or (decode == "chunks" and schedule != "stream"):
            raise ValueError(f"decode must be 'windows' or 'chunks' (with schedule='stream'), got {decode!r}")
        self.schedule, self.decode = schedule, decode
        self.peak_held = 0
        self.speed = SpeedSettings(phase_upsample, channels_last, cudnn_benchmark, sdpa_backend, compile)
        self._speed_applied: tuple | None = None
        if window < 1 or not 0 <= overlap < window:
            raise ValueError(f"need window >= 1 and 0 <= overlap < window, got window={window}, overlap={overlap}")
        self.model = model.eval().requires_grad_(False)
        self.window, self.overlap = int(window), int(overlap)
        self.area = int(area) if area else model_area(model)
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
            "schedule": self.schedule,
            "decode": self.decode,
            "matte": self.supports_matte,
            "speed": vars(self.speed.resolved(self.model.device)),
            "model": self.model.config,
        }

    def _announce(self, first_window: float, windows: int, num_frames: int, size: tuple[int, int]) -> None:
        """Log the projected time of a long render once its first UNet window has run.

        The decoder pass costs about as much as the UNet pass (the real model: 86 against 35 ms a frame on an
        H200), so the projection is twice the UNet's windows; it is a lower bound where the decoder costs more.
        """
        projected = 2 * first_window * windows
        if projected > ANNOUNCE_SECONDS:
            logger.warning(
                "model render of %d frames at %dx%d (%d windows of %d): the first window took %.1f s, the clip will "
                "take about %.0f min. A smaller working_area renders faster (the model was trained at %s)",
                num_frames,
                size[1],
                size[0],
                windows,
                self.window,
                first_window,
                projected / 60,
                "x".join(map(str, reversed(self.model.options.training_size)))
                if getattr(self.model.options, "training_size", None)
                else "an unrecorded size",
            )

    def _apply_speed(self) -> SpeedSettings:
        """The speed switches on the model's current device and dtype (compiled once)."""
        key = (self.model.device, self.model.dtype)
        if self._speed_applied is None or self._speed_applied[0] != key:
            compile_now = self.speed.compile and self._speed_applied is None
            settings = SpeedSettings(**{**vars(self.speed), "compile": compile_now})
            self._speed_applied = (key, apply_speed_settings(self.model, settings, self.model.device))
        return self._speed_applied[1]

    @torch.no_grad()
    def render(self, frames, disparity, disp_focus, k, progress: Callable | None = None, matte=None) -> Tensor:
        speed = self._apply_speed()
        model, device = self.model, self.model.device
        num_frames, _, height, width = frames.shape
        if matte is not None:
            disparity = focus_under_matte(frames, disparity, disp_focus, matte, self.chunk_frames)
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
        # the value checks cost a device sync per call: the whole clip once, then none per window
        model.check_inputs(aif, disp, d_f, k_work)
        checking, model.check_values = model.check_values, False
        out = torch.empty_like(frames)
        clip = (aif, disp, d_f, k_work)

        def emit(start: int, rendered: Tensor) -> None:
            """Frames [start, start + n) of the render [n, 3, h, w] in [-1, 1]: to the input's size, into `out`."""
            for first in range(0, rendered.shape[0], self.chunk_frames):
                chunk = slice(start + first, min(start + first + self.chunk_frames, start + rendered.shape[0]))
                native = as_unit_float(frames[chunk], device)
                radius = native_radius(
                    disparity[chunk].to(device), disp_focus[chunk].to(device), k[chunk].to(device), (height, width)
                )
                work = ((rendered[first : first + self.chunk_frames] + 1) / 2).clamp(0, 1)
                out[chunk] = like_input(to_native(native, work, radius, self.sharp_radius, self.fade), frames)

        try:
            with speed.attention():
                if self.schedule == "two_pass":
                    emit(0, self._two_pass(clip, size, progress))
                else:
                    self._streamed(clip, size, emit, progress)
        finally:
            model.check_values = checking
        return out

    def _timed_unet(self, inputs: dict, windows: int, num_frames: int, size: tuple[int, int], first: bool) -> Tensor:
        start = time.perf_counter()
        latents = self.model.unet(**inputs).float()
        if first:
            self._announce(time.perf_counter() - start, windows, num_frames, size)
        return latents

    def _streamed(self, clip: tuple, size: tuple[int, int], emit: Callable, progress: Callable | None) -> None:
        """UNet and decoder interleaved; each frame encoded once (`EncodedClip`) and emitted as it is final.

        After UNet window j the latents of the frames before window j + 1 are final, so every decode window that
        ends there runs; a decoded frame is final once no later decode window holds it. The frames held are
        those of the windows between the oldest not yet decoded and the newest encoded (`peak_held`; window +
        stride = 12 for window 8, overlap 4). With `decode="chunks"` the decoder runs on consecutive chunks of
        `window` frames instead, each frame decoded once, without blending.
        """
        model = self.model
        aif, disp, d_f, k_work = clip
        num_frames = aif.shape[1]
        plan = overlap_windows(num_frames, self.window, self.overlap)
        decodes = plan
        if self.decode == "chunks":
            decodes = [OverlapWindow(c, min(c + self.window, num_frames), 0) for c in range(0, num_frames, self.window)]
        total = len(plan) + len(decodes)
        encoded = EncodedClip(model, aif, disp, d_f, keep_skips=self.use_skips)
        latents, rendered = OverlapBlend(), OverlapBlend()
        report = (lambda done, total: None) if progress is None else progress
        decoded, done = 0, 0
        for j, span in enumerate(plan):
            encoded.encode(span.stop)
            inputs = encoded.unet_inputs(span.start, span.stop, k_work)
            latents.add(span, self._timed_unet(inputs, len(plan), num_frames, size, first=j == 0))
            done += 1
            report(done, total)
            final = plan[j + 1].start if j + 1 < len(plan) else num_frames
            while decoded < len(decodes) and decodes[decoded].stop <= final:
                window = decodes[decoded]
                skips = encoded.window_skips(window.start, window.stop)
                frames = model.decode(latents.window(window.start, window.stop).to(model.dtype), skips=skips)
                rendered.add(window, frames.float())
                decoded += 1
                done += 1
                report(done, total)
                # frames before the next decode window are final; no window needs their encodings or latents
                ready = decodes[decoded].start if decoded < len(decodes) else num_frames
                if ready > rendered.taken:
                    start = rendered.taken
                    emit(start, rendered.take(ready)[0])
                    latents.take(ready)
                    encoded.release(ready)
        self.peak_held = encoded.peak_held

    def _two_pass(self, clip: tuple, size: tuple[int, int], progress: Callable | None) -> Tensor:
        """The previous schedule, for comparison: the UNet over every window, then the decoder over every window,
        each window encoding its frames again (each frame about 3.8 times on a long clip). Returns [T, 3, h, w]."""
        model = self.model
        aif, disp, d_f, k_work = clip
        num_frames = aif.shape[1]
        windows = len(overlap_windows(num_frames, self.window, self.overlap))
        calls = []

        def unet_window(aif: Tensor, disparity: Tensor, disp_focus: Tensor, k: Tensor) -> Tensor:
            calls.append(None)
            inputs = model.unet_inputs(aif, disparity, disp_focus, k)
            return self._timed_unet(inputs, windows, num_frames, size, first=len(calls) == 1)

        def decode_window(latents: Tensor, aif: Tensor) -> Tensor:
            skips = model.encode_with_skips(aif).skips if self.use_skips else None
            return model.decode(latents.to(model.dtype), skips=skips).float()

        report = (lambda done, total: None) if progress is None else progress
        latents = weighted_overlap(
            unet_window,
            aif,
            self.window,
            self.overlap,
            context={"disparity": disp, "disp_focus": d_f, "k": k_work},
            progress=lambda done, total: report(done, 2 * windows),
        )
        return weighted_overlap(
            decode_window,
            latents,
            self.window,
            self.overlap,
            context={"aif": aif},
            progress=lambda done, total: report(windows + done, 2 * windows),
        )[0]


def focus_under_matte(frames: Tensor, disparity: Tensor, disp_focus: Tensor, matte: Tensor, chunk: int = 4) -> Tensor:
    """The disparity [T, 1, h, w] with the subject pulled to d_f under the matte refined against the frames:
    d + alpha (d_f - d), at the disparity's size (see the module docstring)."""
    from any2bokeh.optics.matte import refine_matte

    out = torch.empty_like(disparity, dtype=torch.float32)
    size = tuple(disparity.shape[-2:])
    for start in range(0, frames.shape[0], chunk):
        part = slice(start, start + chunk)
        guide = resize(as_unit_float(frames[part], disparity.device), size).clamp(0, 1)
        alpha = refine_matte(resize(matte[part].to(disparity.device).float(), size).clamp(0, 1), guide)
        d, d_f = disparity[part].float(), disp_focus[part].to(disparity.device).float().view(-1, 1, 1, 1)
        out[part] = d + alpha * (d_f - d)
    return out
