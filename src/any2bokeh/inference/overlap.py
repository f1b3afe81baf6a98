"""The weighted overlap inference strategy (§3.5, eqs. 6-7).

The model sees a few frames at a time. A long video is cut into windows of `window` frames
that step by `window - overlap`; the last window is aligned to the video's end so that every
window is full. Windows are merged in order: where a window overlaps what came before (m
frames), the frame at offset j = 0..m-1 of that overlap is

    γ_j · earlier + (1 - γ_j) · later,      γ_j = ½ (1 + cos(π j / m))       (eq. 7)

so the earlier window hands over smoothly to the later one (γ_0 = 1, γ falls towards 0).

"Earlier" is the result merged so far. Because the last window is aligned to the end, its
overlap with what came before, m = (end of the previous window) - (start of the last window),
can be longer than `overlap` (up to `window - 1`), and it may reach back into frames that two
windows already share; it is blended over its whole length m with the same formula, so each
hand-over is one cosine ramp and each frame's window weights still sum to 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class OverlapWindow:
    """One window: frames [start, stop); its first `blend` frames are blended with earlier ones."""

    start: int
    stop: int
    blend: int


def _check_plan(num_frames: int, window: int, overlap: int) -> None:
    for name, value in (("num_frames", num_frames), ("window", window), ("overlap", overlap)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must satisfy 0 <= overlap < window, got overlap={overlap}, window={window}")


def overlap_windows(num_frames: int, window: int = 8, overlap: int = 4) -> list[OverlapWindow]:
    """The window plan for a video of `num_frames` frames (one window when it fits)."""
    _check_plan(num_frames, window, overlap)
    if num_frames <= window:
        return [OverlapWindow(0, num_frames, 0)]
    stride = window - overlap
    # Every start whose window ends before the video does, then one window aligned to the end.
    starts = list(range(0, num_frames - window, stride)) + [num_frames - window]
    plan, merged_until = [], 0
    for start in starts:
        plan.append(OverlapWindow(start, start + window, max(0, merged_until - start)))
        merged_until = start + window
    return plan


def overlap_weights(m: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """γ_j = ½ (1 + cos(π j / m)) for j = 0..m-1 (eq. 7): the earlier window's weight, [m]."""
    if m < 0:
        raise ValueError(f"overlap length m must be >= 0, got {m}")
    j = torch.arange(m, dtype=torch.float64)
    return (0.5 * (1.0 + torch.cos(math.pi * j / max(m, 1)))).to(dtype)


def window_weights(num_frames: int, window: int = 8, overlap: int = 4) -> torch.Tensor:
    """How much each window contributes to each frame of the merged result, [windows, num_frames].

    Each column sums to 1. This is what `weighted_overlap` computes, written as weights (for
    plots and checks); `weighted_overlap` itself merges window by window and never builds it.
    """
    plan = overlap_windows(num_frames, window, overlap)
    weights = torch.zeros(len(plan), num_frames, dtype=torch.float64)
    for index, span in enumerate(plan):
        gamma = overlap_weights(span.blend, torch.float64)
        blended = slice(span.start, span.start + span.blend)
        # Earlier windows keep γ of their share in the overlap; the new window takes the rest.
        weights[:index, blended] *= gamma
        weights[index, blended] = 1.0 - gamma
        weights[index, span.start + span.blend : span.stop] = 1.0
    return weights


Progress = Callable[[int, int], None]


def _progress_hook(progress: bool | Progress | None, total: int):
    """A (callback, close) pair: `True` shows a tqdm bar, a callable gets (windows done, total)."""
    if progress is True:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="windows", unit="window", leave=False)
        return (lambda done, _total: bar.update(1)), bar.close
    if progress in (None, False):
        return (lambda done, _total: None), (lambda: None)
    if not callable(progress):
        raise TypeError(f"progress must be a bool or a callable(done, total), got {progress!r}")
    return progress, (lambda: None)


def weighted_overlap(
    fn: Callable[..., torch.Tensor],
    frames: torch.Tensor,
    window: int = 8,
    overlap: int = 4,
    *,
    context: Mapping[str, torch.Tensor] | None = None,
    progress: bool | Progress | None = None,
) -> torch.Tensor:
    """Run `fn` over overlapping windows of `frames` and blend the windows (§3.5, eqs. 6-7).

    Args:
        fn: maps one window [B, w, ...] to [B, w, ...] (the trailing dims may change, e.g.
            frames to latents). It is called as `fn(frames_window, **context_window)`.
        frames: [B, T, ...]; T is the time axis.
        window, overlap: frames per window and frames shared by consecutive windows
            (window >= 1, 0 <= overlap < window). T <= window gives one call on all T frames.
        context: per-frame inputs sliced with the frames, each [B, T, ...] (e.g. the disparity,
            d_f [B, T] and K [B, T]); passed to `fn` by name.
        progress: True for a tqdm bar, or a callable receiving (windows done, total windows).

    Returns:
        [B, T, ...out] on the device and dtype of `fn`'s outputs.
    """
    if not isinstance(frames, torch.Tensor) or frames.dim() < 2:
        raise ValueError(f"frames must be a tensor [B, T, ...], got {getattr(frames, 'shape', type(frames))}")
    num_frames = frames.shape[1]
    plan = overlap_windows(num_frames, window, overlap)
    context = dict(context or {})
    for name, value in context.items():
        if not isinstance(value, torch.Tensor) or value.dim() < 2 or value.shape[:2] != frames.shape[:2]:
            raise ValueError(
                f"context[{name!r}] must be a tensor [B, T, ...] with B, T = {tuple(frames.shape[:2])}, "
                f"got {tuple(getattr(value, 'shape', ()))}"
            )
    report, close = _progress_hook(progress, len(plan))
    blend = OverlapBlend()
    try:
        for done, span in enumerate(plan, start=1):
            part = slice(span.start, span.stop)
            out = fn(frames[:, part], **{name: value[:, part] for name, value in context.items()})
            expected = (frames.shape[0], span.stop - span.start)
            if not isinstance(out, torch.Tensor) or tuple(out.shape[:2]) != expected:
                raise ValueError(
                    f"fn must map a window [B, w, ...] to [B, w, ...]: window {span.start}:{span.stop} "
                    f"gave {tuple(getattr(out, 'shape', ())) or type(out).__name__}, expected leading dims {expected}"
                )
            blend.add(span, out)
            report(done, len(plan))
    finally:
        close()
    return blend.take(num_frames)


class OverlapBlend:
    """The merge of eq. 7 one window at a time, holding only the frames not yet taken.

    `add(span, out)` merges a window's output [B, w, ...] (windows in plan order); `take(until)` returns the
    merged frames [B, until - taken, ...] up to `until` and forgets them. A frame is final once the next
    window of the plan starts after it, so a renderer can take frames as they finish and keep a bounded
    number on the device. `weighted_overlap` is this with every frame taken at the end.
    """

    def __init__(self) -> None:
        self.frames: dict[int, torch.Tensor] = {}
        self.taken = 0

    def add(self, span: OverlapWindow, out: torch.Tensor) -> None:
        if span.start < self.taken:
            raise ValueError(f"window {span.start}:{span.stop} reaches frames already taken (< {self.taken})")
        shape = next(iter(self.frames.values())).shape[1:] if self.frames else out.shape[2:]
        if out.shape[2:] != shape:
            raise ValueError(f"fn's output changed shape between windows: {tuple(out.shape)} vs {tuple(shape)}")
        # gamma [m]: the earlier merge's weight at each blended frame; lerp(later, earlier, γ) =
        # γ·earlier + (1 - γ)·later, exact when both windows agree
        gamma = overlap_weights(span.blend, out.dtype).to(out.device)
        for j in range(span.stop - span.start):
            frame = span.start + j
            later = out[:, j]
            self.frames[frame] = torch.lerp(later, self.frames[frame], gamma[j]) if j < span.blend else later

    def window(self, start: int, stop: int) -> torch.Tensor:
        """The merged frames [B, stop - start, ...] of a span still held."""
        return torch.stack([self.frames[frame] for frame in range(start, stop)], dim=1)

    def take(self, until: int) -> torch.Tensor:
        """The merged frames [taken, until) as [B, n, ...], no longer held."""
        taken = [self.frames.pop(frame) for frame in range(self.taken, until)]
        self.taken = until
        return torch.stack(taken, dim=1)
