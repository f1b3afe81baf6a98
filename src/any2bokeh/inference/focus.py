"""Focus as a per-frame d_f curve, from a value, a tracked point or a folder of masks.

d_f is the focal disparity of eqs. (1)-(3) (§3.1) in normalized units (1 = nearest). When it
follows a subject it is the subject's mean disparity on each frame, `subject_focus`, the same
formula the synthetic training data uses. One focus is a mapping with exactly one kind:

    {"value": 0.4}                          d_f = 0.4 on every frame
    {"point": [x, y], "frame": 0}           the subject under (x, y) on that frame, tracked
    {"mask": "masks/", "object_id": 2}      per-frame masks: DAVIS palette PNGs or binary PNGs
    {"text": "the dancer"}                  the subject a segmenter finds (`segment`, see `focus_curve`)
    {"box": [x0, y0, x1, y1], "frame": 0}   the subject in the box on that frame, tracked by a segmenter

Frames where the subject is absent (lost by the tracker, or an empty mask) take d_f
interpolated from the neighbouring frames; a subject curve is then smoothed with a short
running median and mean so the focus does not breathe with the depth noise.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from any2bokeh.data.disparity import subject_focus
from any2bokeh.inference.tracking import Track, TrackerConfig, track_subject

FOCUS_KINDS = ("value", "point", "mask", "text", "box")
FOCUS_KEYS = {
    "value": {"value"},
    "point": {"point", "frame"},
    "mask": {"mask", "object_id"},
    "text": {"text"},
    "box": {"box", "frame"},
}
MASK_EXTENSIONS = (".png",)


def check_focus_value(value, what: str = "focus value") -> float:
    """d_f as a float in [0, 1], or a ValueError naming `what`."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{what} must be a normalized disparity in [0, 1], got {value}")
    return value


def fill_gaps(curve: torch.Tensor, what: str = "focus") -> torch.Tensor:
    """Replace NaN frames of a [T] curve by linear interpolation between the nearest valid
    frames, holding the first and last valid values at the ends."""
    valid = ~torch.isnan(curve)
    if not valid.any():
        raise ValueError(f"{what}: the subject is absent on every frame, so it gives no focus")
    frames = torch.arange(curve.numel(), dtype=torch.float64)
    filled = np.interp(frames.numpy(), frames[valid].numpy(), curve[valid].double().numpy())
    return torch.from_numpy(filled).to(curve.dtype)


def smooth_curve(curve: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """A running median then a running mean, each over 2·radius + 1 frames, of a [T] curve.

    The median drops single-frame outliers (a frame where the mask leaks onto the background);
    the mean removes the remaining jitter. Windows stay centred, shrinking near the ends, so a
    constant or a linear ramp (a steady focus pull) comes through unchanged.
    """
    if radius < 0:
        raise ValueError(f"smoothing radius must be >= 0, got {radius}")
    out = curve.double()
    last = out.numel() - 1
    for reduce in (torch.median, torch.mean):
        out = torch.stack([reduce(out[t - r : t + r + 1]) for t in range(last + 1) for r in [min(radius, t, last - t)]])
    return out.to(curve.dtype)


def _frame_order(path: Path) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def load_masks(
    folder: str | Path, num_frames: int, size: tuple[int, int], object_id: int | None = None
) -> torch.Tensor:
    """Per-frame subject weights [T, H, W] float32 in [0, 1] from a folder of mask PNGs.

    Palette PNGs (DAVIS, mode "P") hold object ids: `object_id` picks one; with no `object_id` the
    folder must hold a single object. Other PNGs (binary 0/255 or 0/1, grey or RGB) count every
    non-zero pixel as the subject and need no id: an `object_id` is used there only when the masks
    are a label map holding several ids, that one among them. So the same binary masks work in
    `predict.py` (no id) and in `evaluate.py`'s DAVIS set (whose default id is 1). Files are taken in
    frame-number order; masks of another size are resized to `size` (area-averaged, so a mask's edge
    gives fractional weights).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"focus mask folder {folder} does not exist")
    paths = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in MASK_EXTENSIONS and not p.name.startswith(".")),
        key=_frame_order,
    )
    if len(paths) != num_frames:
        raise ValueError(
            f"focus mask folder {folder} holds {len(paths)} PNG masks, but the video has {num_frames} frames"
        )
    labels, palette = [], False
    for path in paths:
        try:
            with Image.open(path) as image:
                palette = palette or image.mode == "P"
                labels.append(np.asarray(image if image.mode in ("P", "L", "I", "I;16", "1") else image.convert("L")))
        except OSError as error:
            raise ValueError(f"focus mask {path} does not decode: {error}") from None
    if any(label.shape != labels[0].shape for label in labels):
        raise ValueError(f"focus masks in {folder} differ in size: {sorted({label.shape for label in labels})}")
    stack = np.stack(labels).astype(np.int64)  # [T, h, w]
    if object_id is None and palette:
        ids = sorted(int(i) for i in np.unique(stack) if i != 0)
        if len(ids) > 1:
            raise ValueError(f"focus masks in {folder} hold objects {ids}: choose one with object_id")
        masks = stack != 0
    elif object_id is None or (not palette and not _is_label_map(stack, int(object_id))):
        masks = stack != 0
    else:
        masks = stack == int(object_id)
    if not masks.any():
        what = f"object {object_id}" if object_id is not None else "a subject"
        raise ValueError(f"focus masks in {folder} are empty on every frame: no frame shows {what}")
    weights = torch.from_numpy(masks).float()[:, None]  # [T, h, w] -> [T, 1, h, w]
    if tuple(weights.shape[-2:]) != tuple(size):
        weights = F.interpolate(weights, size=size, mode="area")
    return weights[:, 0].clamp(0, 1)


def _is_label_map(stack: np.ndarray, object_id: int) -> bool:
    """Non-palette masks that hold several object ids, `object_id` among them (not a binary or grey mask)."""
    ids = np.unique(stack)
    ids = ids[ids != 0]
    return len(ids) > 1 and object_id in ids and len(ids) <= 32


def _flat(disparity: torch.Tensor) -> torch.Tensor:
    if disparity.dim() == 4 and disparity.shape[1] == 1:
        return disparity[:, 0]  # [T, 1, H, W] -> [T, H, W]
    if disparity.dim() != 3:
        raise ValueError(f"disparity must be [T, H, W] or [T, 1, H, W], got shape {tuple(disparity.shape)}")
    return disparity


def point_focus(
    frames, disparity, point, frame: int = 0, smooth: int = 2, tracker: TrackerConfig | None = None
) -> torch.Tensor:
    """d_f [T]: the mean disparity of the subject tracked from `point` on `frame`."""
    return point_subject(frames, disparity, point, frame, smooth, tracker)[0]


def point_subject(
    frames, disparity, point, frame: int = 0, smooth: int = 2, tracker: TrackerConfig | None = None
) -> tuple[torch.Tensor, Track]:
    """d_f [T] of the subject tracked from `point` on `frame`, and the track (its masks at the tracker's size)."""
    track = track_subject(frames, _flat(disparity), point, frame, tracker)
    return subject_curve(track.disparity, track.masks.float(), f"focus point {list(point)}", smooth), track


def mask_focus(disparity, folder, object_id: int | None = None, smooth: int = 2) -> torch.Tensor:
    """d_f [T]: the mean disparity under each frame's mask."""
    disparity = _flat(disparity)
    weights = load_masks(folder, disparity.shape[0], tuple(disparity.shape[-2:]), object_id)
    return subject_curve(disparity, weights, f"focus masks in {folder}", smooth)


def subject_curve(disparity, weights, what: str = "focus", smooth: int = 2) -> torch.Tensor:
    """d_f [T]: the mean disparity under per-frame subject weights [T, h, w] (resized to the disparity's size),
    frames where the subject is absent filled from their neighbours, then smoothed; `what` names it in errors."""
    disparity = _flat(disparity).float()
    weights = _flat(torch.as_tensor(weights).float())
    if tuple(weights.shape[-2:]) != tuple(disparity.shape[-2:]):
        weights = F.interpolate(weights[:, None], size=tuple(disparity.shape[-2:]), mode="area")[:, 0]
    curve = subject_focus(disparity, weights)
    return smooth_curve(fill_gaps(curve, what), smooth)


def focus_kind(spec: Mapping, what: str = "focus") -> str:
    """The one kind in `spec` ("value", "point" or "mask"); unknown or mixed keys are errors."""
    kinds = [kind for kind in FOCUS_KINDS if spec.get(kind) is not None]
    if len(kinds) != 1:
        raise ValueError(f"{what} must set exactly one of {list(FOCUS_KINDS)}, got {dict(spec)}")
    unknown = {key for key, value in spec.items() if value is not None} - FOCUS_KEYS[kinds[0]]
    if unknown:
        raise ValueError(
            f"{what}: unknown or mixed keys {sorted(unknown)} for a {kinds[0]} focus (allowed: {sorted(FOCUS_KEYS[kinds[0]])})"
        )
    return kinds[0]


def focus_curve(
    spec: Mapping,
    disparity: torch.Tensor,
    frames: torch.Tensor | None = None,
    smooth: int = 2,
    tracker: TrackerConfig | None = None,
    segment: Callable[[Mapping], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The d_f curve [T] (float32, in [0, 1]) of one focus `spec` over a video.

    disparity: [T, H, W] or [T, 1, H, W], normalized over the clip; frames: [T, 3, H, W] in
    [0, 1], needed by a point focus only. segment: the subject's masks [T, h, w] for a text, box or
    point spec (a segmenter, `any2bokeh.inference.segmentation`); a text or box without it is an error,
    a point without it goes to the weightless tracker.
    """
    kind = focus_kind(spec)
    num_frames = _flat(disparity).shape[0]
    if kind == "value":
        return torch.full((num_frames,), check_focus_value(spec["value"]), dtype=torch.float32)
    if kind in ("text", "box") or (kind == "point" and segment is not None):
        if segment is None:
            from any2bokeh.inference.segmentation import needs_segmenter

            raise ValueError(needs_segmenter(kind))
        curve = subject_curve(disparity, segment(spec), f"focus.{kind} {spec[kind]!r}", smooth)
    elif kind == "point":
        if frames is None:
            raise ValueError("a focus point needs the video's frames to track the subject")
        curve = point_focus(frames, disparity, spec["point"], spec.get("frame", 0), smooth, tracker)
    else:
        curve = mask_focus(disparity, spec["mask"], spec.get("object_id"), smooth)
    return curve.float().clamp(0, 1)
