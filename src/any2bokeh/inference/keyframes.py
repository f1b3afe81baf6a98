"""Rack focus and K over time, from keyframes.

Focus keyframes mix the focus kinds of `focus.py`, each at a frame:

    [{"frame": 0, "point": [0.3, 0.6]}, {"frame": 40, "value": 0.1}]

Each keyframe has its own d_f curve over the whole video (a point keyframe tracks the subject
under the point on its own frame, forwards and backwards). That curve holds from its frame to
the next keyframe's; the hand-over to the next curve is an ease over `transition` frames that
*ends* on the next keyframe's frame, so each keyframe's focus is reached exactly on its frame:
with keyframes at frames a < b and transition n, frame t in [b - n, b] is

    d_f(t) = (1 - e(u)) · curve_a(t) + e(u) · curve_b(t),   u = (t - (b - n)) / n,

with e a smoothstep (3u² - 2u³), cosine (½(1 - cos πu)) or linear ease; the transition starts
no earlier than frame a. The first keyframe's curve also holds before its frame. A focus pull is
a d_f curve, as in the paper's focus-pull demos (§4).

K is a number or keyframes [{"frame": 0, "k": 4}, {"frame": 48, "k": 32}], linear between
keyframes and held before the first and after the last.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch

from any2bokeh.inference.focus import check_focus_value, focus_curve, focus_kind
from any2bokeh.inference.tracking import TrackerConfig

EASES = {
    "smoothstep": lambda u: u * u * (3 - 2 * u),
    "cosine": lambda u: 0.5 * (1 - torch.cos(math.pi * u)),
    "linear": lambda u: u,
}


def _check_frames(keyframes: Sequence[Mapping], what: str, num_frames: int | None) -> list[int]:
    """Each keyframe's frame, checked: an int, inside the video, strictly increasing."""
    if isinstance(keyframes, (str, Mapping)) or not isinstance(keyframes, Sequence) or not keyframes:
        raise ValueError(f"{what} keyframes must be a non-empty list of mappings, got {keyframes!r}")
    frames = []
    for index, keyframe in enumerate(keyframes):
        name = f"{what} keyframe {index}"
        if not isinstance(keyframe, Mapping):
            raise ValueError(f"{name} must be a mapping with a 'frame' key, got {keyframe!r}")
        frame = keyframe.get("frame")
        if isinstance(frame, bool) or not isinstance(frame, int) or frame < 0:
            raise ValueError(f"{name}: 'frame' must be an int >= 0, got {frame!r}")
        if num_frames is not None and frame >= num_frames:
            raise ValueError(f"{name} (frame {frame}) lies past the video's last frame {num_frames - 1}")
        if frames and frame <= frames[-1]:
            order = "repeats" if frame == frames[-1] else "comes before"
            raise ValueError(
                f"{name} (frame {frame}) {order} keyframe {index - 1} (frame {frames[-1]}): keyframes must be sorted by frame, each frame once"
            )
        frames.append(frame)
    return frames


def k_curve(k, num_frames: int) -> torch.Tensor:
    """K per frame [num_frames] (float32), from a number or from keyframes {frame, k}."""
    if isinstance(k, (int, float)) and not isinstance(k, bool):
        if k < 0 or not math.isfinite(k):
            raise ValueError(f"K must be a finite number >= 0 (pixels per unit of disparity), got {k}")
        return torch.full((num_frames,), float(k))
    frames = _check_frames(k, "K", num_frames)
    values = []
    for index, keyframe in enumerate(k):
        unknown = set(keyframe) - {"frame", "k"}
        if unknown or "k" not in keyframe:
            raise ValueError(
                f"K keyframe {index} (frame {frames[index]}) must hold 'frame' and 'k' only, got keys {sorted(keyframe)}"
            )
        value = keyframe["k"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(
                f"K keyframe {index} (frame {frames[index]}): k must be a finite number >= 0, got {value!r}"
            )
        values.append(float(value))
    t = torch.arange(num_frames, dtype=torch.float64)
    at = torch.tensor(frames, dtype=torch.float64)
    # Index of the keyframe at or before each frame; frames before the first use the first.
    left = (torch.searchsorted(at, t, right=True) - 1).clamp(0, len(frames) - 1)
    right = (left + 1).clamp(max=len(frames) - 1)
    span = (at[right] - at[left]).clamp(min=1)
    u = ((t - at[left]) / span).clamp(0, 1)
    values = torch.tensor(values, dtype=torch.float64)
    return (values[left] + u * (values[right] - values[left])).float()


def _check_focus_keyframe(keyframe: Mapping, name: str) -> None:
    spec = {key: value for key, value in keyframe.items() if key != "frame"}
    if focus_kind(spec, name) == "value":
        check_focus_value(spec["value"], f"{name} value")


def focus_keyframes(
    keyframes: Sequence[Mapping],
    disparity: torch.Tensor,
    frames: torch.Tensor | None = None,
    transition: int = 8,
    ease: str = "smoothstep",
    smooth: int = 2,
    tracker: TrackerConfig | None = None,
    segment: Callable[[Mapping], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The d_f curve [T] (float32, in [0, 1]) of a rack focus (see the module docstring).

    disparity: [T, H, W] or [T, 1, H, W], normalized over the clip; frames: [T, 3, H, W] in
    [0, 1], needed only when a keyframe is a point; segment: the masks of a text, box or point keyframe's
    subject (`focus_curve`).
    """
    num_frames = disparity.shape[0]
    if isinstance(transition, bool) or not isinstance(transition, int) or transition < 0:
        raise ValueError(f"focus transition must be an int >= 0 (frames), got {transition!r}")
    if ease not in EASES:
        raise ValueError(f"focus ease must be one of {sorted(EASES)}, got {ease!r}")
    at = _check_frames(keyframes, "focus", num_frames)
    names = [f"focus keyframe {index} (frame {frame})" for index, frame in enumerate(at)]
    for keyframe, name in zip(keyframes, names):
        _check_focus_keyframe(keyframe, name)  # every keyframe before any tracking starts
    curves = []
    for keyframe, frame, name in zip(keyframes, at, names):
        spec = {key: value for key, value in keyframe.items() if key != "frame"}
        if "point" in spec or "box" in spec:
            spec["frame"] = frame  # a point or a box is picked on its keyframe's frame
        try:
            curves.append(focus_curve(spec, disparity, frames, smooth, tracker, segment).double())
        except (ValueError, FileNotFoundError) as error:
            raise type(error)(f"{name}: {error}") from None
    out = curves[0].clone()
    t = torch.arange(num_frames, dtype=torch.float64)
    for (start, stop), curve in zip(zip(at, at[1:]), curves[1:]):
        begin = max(start, stop - transition)
        # Weight of the next keyframe's curve: 0 up to `begin`, eased to 1 at `stop`, 1 after.
        u = ((t - begin) / (stop - begin)).clamp(0, 1) if stop > begin else (t >= stop).double()
        weight = EASES[ease](u)
        out = (1 - weight) * out + weight * curve
    return out.float().clamp(0, 1)


def resolve_focus(
    focus: Mapping,
    disparity: torch.Tensor,
    frames: torch.Tensor | None = None,
    smooth: int = 2,
    tracker: TrackerConfig | None = None,
    segment: Callable[[Mapping], torch.Tensor] | None = None,
) -> torch.Tensor:
    """The d_f curve [T] of a `focus` setting: one kind (value, point + frame, mask + object_id, text, box +
    frame) or `keyframes` with an optional `transition` (frames) and `ease`; None values count as unset.
    `segment` gives the masks of a text, box or point subject (`focus_curve`)."""
    focus = {key: value for key, value in focus.items() if value is not None}
    if "keyframes" not in focus:
        return focus_curve(focus, disparity, frames, smooth, tracker, segment)
    extra = set(focus) - {"keyframes", "transition", "ease"}
    if extra:
        raise ValueError(f"focus: with keyframes, set the focus inside each keyframe; got also {sorted(extra)}")
    return focus_keyframes(
        focus["keyframes"],
        disparity,
        frames,
        focus.get("transition", 8),
        focus.get("ease", "smoothstep"),
        smooth,
        tracker,
        segment,
    )
