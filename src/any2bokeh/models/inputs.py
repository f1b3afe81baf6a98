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


def normalize_inputs(
    aif: Tensor, disparity: Tensor, disp_focus: Tensor | float, k: Tensor | float, multiple: int, check_values: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """(disparity [B, T, 1, H, W], disp_focus [B, T], k [B, T]) for frames `aif` [B, T, 3, H, W].

    H and W must be multiples of `multiple`; with `check_values`, every value is checked against its range.
    """
    batch, num_frames, _, height, width = aif.shape
    if height % multiple or width % multiple:
        raise ValueError(f"aif: height and width must be multiples of {multiple}, got {height}x{width}")
    if disparity.ndim == 4:
        # disparity: [B, T, H, W] -> [B, T, 1, H, W]
        disparity = disparity.unsqueeze(2)
    if disparity.shape != (batch, num_frames, 1, height, width):
        raise ValueError(
            f"disparity must be [{batch}, {num_frames}, 1, {height}, {width}] like aif, got {tuple(disparity.shape)}"
        )
    disp_focus = as_per_frame(disp_focus, batch, num_frames, "disp_focus", aif.device)
    k = as_per_frame(k, batch, num_frames, "k", aif.device)
    if check_values:
        check_ranges(aif=aif, disparity=disparity, disp_focus=disp_focus, k=k)
    return disparity, disp_focus, k
