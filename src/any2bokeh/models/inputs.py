"""Normalising and checking the inputs of `AnyToBokeh`: per-frame values and value ranges."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def as_per_frame(value: Tensor | float, batch: int, frames: int, name: str, device: torch.device) -> Tensor:
    """A float, [B] or [B, T] value as a float32 [B, T] tensor."""
    value = torch.as_tensor(value, dtype=torch.float32, device=device)
    if value.ndim == 0:
        return value.expand(batch, frames)
    if value.shape == (batch,):
        return value[:, None].expand(batch, frames)
    if value.shape == (batch, frames):
        return value
    raise ValueError(f"{name} must be a float, [{batch}] or [{batch}, {frames}], got shape {tuple(value.shape)}")


def check_ranges(**tensors: Tensor) -> None:
    """Every named tensor is finite and in its range (aif, disparity, disp_focus, k); one device sync for all."""
    extremes = torch.stack([torch.stack([t.min(), t.max()]).float() for t in tensors.values()]).tolist()
    ranges = {"aif": (-1.0, 1.0), "disparity": (0.0, 1.0), "disp_focus": (0.0, 1.0), "k": (0.0, math.inf)}
    for (name, tensor), (low_value, high_value) in zip(tensors.items(), extremes):
        low, high = ranges[name]
        finite = math.isfinite(low_value) and math.isfinite(high_value)
        # a small tolerance admits resampling overshoot
        if not (finite and low - 1e-3 <= low_value and high_value <= high + 1e-3):
            raise ValueError(
                f"{name} must be finite and in [{low}, {high}], got values in [{low_value:.4g}, {high_value:.4g}]"
            )
