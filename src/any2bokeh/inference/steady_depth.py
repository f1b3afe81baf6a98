"""Steady depth: per-frame relative disparity aligned frame to frame by a robust scale and shift.

A per-frame depth network (Depth Anything V2) gives each frame its own affine ambiguity: frame t's map is
about a_t * d + b_t of the true disparity d. Min-max over the clip does not remove that, so d, and d_f with
it, flicker and the blur breathes. `stabilize_disparity` fits, for each frame t >= 1, the scale and shift
that best map its map onto the already aligned frame t - 1 over the pixels that do not move between the
two frames (DIS optical flow under `motion_px`), robustly (least squares, then again without the residuals
beyond 3 MADs, twice), and applies them to the whole map. The fit runs at a small size; the result keeps
the maps' own size. What is left (the mean |aligned t - aligned t-1| over the static pixels, as a fraction
of the clip's range) is reported before and after, as `flicker`.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

FIT_SIZE = 256


def _small(values: Tensor, size: tuple[int, int]) -> np.ndarray:
    # [T, h, w] -> [T, 1, h, w] -> [T, 1, H', W'] -> [T, H', W']
    return F.interpolate(values[:, None].double(), size=size, mode="area")[:, 0].numpy()


def _grey(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.stack(
        [cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), size[::-1], interpolation=cv2.INTER_AREA) for f in frames]
    )


def robust_affine(x: np.ndarray, y: np.ndarray, rounds: int = 2) -> tuple[float, float]:
    """(a, b) of y ~ a x + b by least squares, refitted `rounds` times without residuals beyond 3 MADs."""
    keep = np.ones(x.shape, dtype=bool)
    a, b = 1.0, 0.0
    for _ in range(rounds + 1):
        if keep.sum() < 2 or np.ptp(x[keep]) == 0:
            break
        a, b = np.polyfit(x[keep], y[keep], 1)
        residual = np.abs(y - (a * x + b))
        mad = np.median(residual[keep]) + 1e-12
        keep = residual <= 3 * 1.4826 * mad
    return float(a), float(b)


def stabilize_disparity(
    raw: Tensor, frames: np.ndarray, motion_px: float = 0.5, min_static: float = 0.05
) -> tuple[Tensor, dict]:
    """Align relative disparity raw [T, h, w] (larger = nearer) frame to frame; frames uint8 [T, H, W, 3].

    Returns the aligned maps (float32, same shape) and a report: `flicker` {before, after} as fractions of
    the clip's range, and the frames whose fit fell back to the identity (fewer than `min_static` of the
    pixels static, or a non-positive scale).
    """
    if raw.ndim != 3 or len(frames) != raw.shape[0]:
        raise ValueError(f"stabilize_disparity: raw [T, h, w] and T frames, got {tuple(raw.shape)} and {len(frames)}")
    height, width = raw.shape[-2:]
    scale = min(1.0, FIT_SIZE / max(height, width))
    size = (max(8, round(height * scale)), max(8, round(width * scale)))
    small, grey = _small(raw, size), _grey(np.asarray(frames), size)
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
    # motion_px is in the frames' pixels; the flow runs at the fit size
    limit = motion_px * size[1] / frames.shape[2]
    aligned_small, params, fallbacks, before, after = [small[0]], [(1.0, 0.0)], [], [], []
    for t in range(1, len(small)):
        motion = flow.calc(grey[t - 1], grey[t], None)
        static = np.hypot(motion[..., 0], motion[..., 1]) < max(limit, 0.25)
        x, y = small[t][static], aligned_small[-1][static]
        a, b = robust_affine(x, y) if static.mean() >= min_static else (1.0, 0.0)
        if a <= 0 or static.mean() < min_static:
            fallbacks.append(t)
            a, b = 1.0, 0.0
        params.append((a, b))
        aligned_small.append(a * small[t] + b)
        before.append(np.abs(small[t][static] - small[t - 1][static]).mean() if static.any() else 0.0)
        after.append(np.abs(aligned_small[-1][static] - y).mean() if static.any() else 0.0)
    values = raw.double()
    out = torch.stack([a * values[t] + b for t, (a, b) in enumerate(params)]).float()
    span_before = float(small.max() - small.min()) or 1.0
    stacked = np.stack(aligned_small)
    span_after = float(stacked.max() - stacked.min()) or 1.0
    report = {
        "flicker": {
            "before": round(float(np.mean(before)) / span_before, 6) if before else 0.0,
            "after": round(float(np.mean(after)) / span_after, 6) if after else 0.0,
        },
        "fallback_frames": fallbacks,
    }
    return out, report
