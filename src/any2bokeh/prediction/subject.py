"""The subject of one video of a `predict.py` run: its masks through the clip, found once.

The focus setting names the subject in one of four ways, and each gives the subject's masks [T, 1, h, w] in [0, 1]:

- `focus.mask`: a folder of mask PNGs (`any2bokeh.inference.focus.load_masks`);
- `focus.text`, `focus.box`, or `focus.point` with `segmenter=<folder>`: a SAM 3 (text) or SAM 2 (point, box)
  video model tracks it through the clip (`any2bokeh.inference.segmentation`);
- `focus.point` without a segmenter (and no focus at all: the frame's centre): the weightless tracker's region (a
  disparity band carried by optical flow, `any2bokeh.inference.tracking`).

The same masks give d_f (the mean disparity under them on each frame) and, with `matte` on, the classical renderer's
matte (the tracker's region only with `tracker_matte`: it follows the disparity it was grown on, errors and all);
`save_masks=true` writes them beside the output. A focus by value or keyframes has no subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from any2bokeh.inference.resolution import resize, working_size
from any2bokeh.prediction.jobs import focus_spec

# frames go to the segmenter at about this area (SAM resizes them to 1024 x 1024 itself)
SEGMENT_AREA = 1024 * 576
SEGMENTER_KINDS = ("text", "box")

# segmenters already loaded in this process, by (folder, device): a batch loads each once
_SEGMENTERS: dict[tuple[str, str], Any] = {}


@dataclass
class Subject:
    """The subject's masks float32 [T, 1, h, w] in [0, 1] (a mask folder's at the disparity's size, the segmenter's
    and the tracker's at the size they work at; renderers and `mask_pngs` resize them), d_f [T] found under them,
    and where the masks came from ("mask folder", "segmenter", "tracker")."""

    masks: Tensor
    disp_focus: Tensor
    source: str


def load_segmenter(folder: str, device: torch.device):
    """The segmenter in `folder` on `device`, loaded once per process."""
    from any2bokeh.inference.segmentation import Segmenter

    key = (str(folder), str(device))
    if key not in _SEGMENTERS:
        _SEGMENTERS[key] = Segmenter(folder, device=device)
    return _SEGMENTERS[key]


def segment_video(
    folder: str, frames: np.ndarray, focus: dict[str, Any], device: torch.device, progress=None
) -> Tensor:
    """The masks [T, h, w] of the subject `focus` names (text, box or point), by the segmenter in `folder`; frames:
    uint8 [T, H, W, 3], handed over at about SEGMENT_AREA pixels; `progress(done, total)` after each frame."""
    from any2bokeh.inference.segmentation import Prompt

    prompt = Prompt(text=focus.get("text"), point=focus.get("point"), box=focus.get("box"), frame=focus.get("frame", 0))
    height, width = frames.shape[1:3]
    size = working_size(height, width, SEGMENT_AREA, upscale=False)
    if size != (height, width):
        small = resize(torch.from_numpy(frames).permute(0, 3, 1, 2).float(), size).round().clamp(0, 255)
        frames = small.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    return load_segmenter(folder, device)(frames, prompt, progress)


def find_subject(
    settings: dict[str, Any],
    frames: np.ndarray,
    small_frames: Tensor,
    small_disparity: Tensor,
    size,
    device,
    progress=None,
) -> Subject | None:
    """The subject of a video's `focus` setting (see the module docstring), or None for a value or keyframes.

    frames: uint8 [T, H, W, 3]; small_frames [T, 3, h', w'] and small_disparity [T, 1, h', w'], where d_f is
    found; size: the (h, w) a mask folder is read at (the disparity's); progress: the segmenter's per-frame report.
    """
    from any2bokeh.inference.focus import load_masks, point_subject, subject_curve

    focus = focus_spec(settings.get("focus", {}))
    segmenter = settings.get("segmenter")
    num_frames = frames.shape[0]
    if "mask" in focus:
        masks = load_masks(focus["mask"], num_frames, tuple(size), focus.get("object_id"))
        source, what = "mask folder", f"focus masks in {focus['mask']}"
    elif any(kind in focus for kind in SEGMENTER_KINDS) or ("point" in focus and segmenter):
        kind = next(kind for kind in (*SEGMENTER_KINDS, "point") if kind in focus)
        if not segmenter:
            from any2bokeh.inference.segmentation import needs_segmenter

            raise ValueError(needs_segmenter(kind))
        masks = segment_video(segmenter, frames, focus, device, progress)  # at about SEGMENT_AREA
        source, what = "segmenter", f"focus.{kind} {focus[kind]!r}"
    elif "point" in focus:
        disp_focus, track = point_subject(small_frames, small_disparity, focus["point"], focus.get("frame", 0))
        # at the tracker's size: it is the matte only on request (`tracker_matte`), and renderers resize mattes
        return Subject(track.masks[:, None].float(), disp_focus.float().clamp(0, 1), "tracker")
    else:
        return None
    disp_focus = subject_curve(small_disparity, masks, what)
    return Subject(masks[:, None].float(), disp_focus.float().clamp(0, 1), source)


def mask_pngs(masks: Tensor, height: int, width: int) -> np.ndarray:
    """Masks [T, 1, h, w] in [0, 1] as uint8 [T, height, width] (0 or 255, the subject where the mask is >= 0.5),
    the binary PNGs `focus.mask` reads back."""
    full = resize(masks.float(), (height, width))[:, 0]
    return ((full >= 0.5).to(torch.uint8) * 255).numpy()
