"""Disparity conventions shared by training data and inference.

The model sees disparity as real videos give it: one map per frame from a depth estimator, in
units of its own, so every clip is min-max normalised over all its frames together (1 = the
nearest point of the clip, 0 = the farthest). The focal plane d_f of Eq. (1)-(3) (Sec. 3.1) is a
disparity in the same normalised units; when it follows a subject, it is the subject's mean
disparity in each frame.

This module imports only torch, so inference can use it without scene synthesis.
"""

from __future__ import annotations

import torch
from torch import Tensor

# The smallest focal disparity (normalised units): a focus at or behind the farthest point (d_f <= 0)
# is raised to it, because the MPI thresholds of Eq. (2) raise i/N to the power 1/d_f. At this value
# every inner threshold is already 0 in float32, so nothing nearer to 0 would change the regions.
MIN_DISP_FOCUS = 1e-6


def _first_bad_frame(values: Tensor) -> int:
    """Index along dim 0 of the first frame holding a NaN or an infinity."""
    bad = ~torch.isfinite(values.reshape(values.shape[0], -1)).all(dim=1)  # [T]
    return int(bad.nonzero()[0, 0])


def normalize_disparity(disparity: Tensor) -> Tensor:
    """Min–max normalise over the whole tensor (the whole clip: every frame together), 1 = nearest; float32 in [0, 1].

    A constant map -> zeros. NaN or inf -> ValueError naming the first bad frame index (dim 0).
    disparity: [T, ...] any real dtype, larger = nearer. The extremes are taken over all frames so
    that the same depth keeps the same value through the clip.
    """
    if disparity.dim() == 0 or disparity.numel() == 0:
        raise ValueError(
            f"disparity must be a non-empty tensor with a frame dimension, got shape {tuple(disparity.shape)}"
        )
    values = disparity.double()
    if not torch.isfinite(values).all():
        raise ValueError(f"disparity has NaN or inf values, first in frame {_first_bad_frame(values)}")
    d_min, d_max = values.min(), values.max()
    span = d_max - d_min
    if span == 0:
        return torch.zeros(disparity.shape, dtype=torch.float32, device=disparity.device)
    return ((values - d_min) / span).clamp(0, 1).float()


def subject_focus(disparity: Tensor, weights: Tensor) -> Tensor:
    """d_f per frame: the weights-weighted mean of `disparity` over each frame.

    disparity, weights: [T, H, W] or [T, 1, H, W] (weights = a mask or alpha in [0, 1]); returns [T]
    float32; a frame whose weights sum to 0 gives NaN (callers choose the fallback).
    """
    if disparity.dim() not in (3, 4) or (disparity.dim() == 4 and disparity.shape[1] != 1):
        raise ValueError(f"disparity must be [T, H, W] or [T, 1, H, W], got shape {tuple(disparity.shape)}")
    if weights.dim() not in (3, 4) or (weights.dim() == 4 and weights.shape[1] != 1):
        raise ValueError(f"weights must be [T, H, W] or [T, 1, H, W], got shape {tuple(weights.shape)}")
    # [T, 1, H, W] -> [T, H, W]
    disp = disparity.reshape(disparity.shape[0], *disparity.shape[-2:]).double()
    w = weights.reshape(weights.shape[0], *weights.shape[-2:]).double()
    if disp.shape != w.shape:
        raise ValueError(
            f"disparity and weights must cover the same frames and pixels, got {tuple(disparity.shape)} "
            f"and {tuple(weights.shape)}"
        )
    if (w < 0).any():
        raise ValueError(f"weights must be >= 0, got a minimum of {float(w.min())}")
    total = w.sum(dim=(-2, -1))  # [T]
    weighted = (w * disp).sum(dim=(-2, -1))  # [T]
    # 0 / 0 is NaN: a frame where the subject is absent has no focus of its own.
    mean = torch.where(total > 0, weighted / total.clamp(min=torch.finfo(torch.float64).tiny), torch.nan)
    return mean.float()
