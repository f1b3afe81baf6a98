"""Optical flow for the flow difference (FD) of Table 1.

The paper's FD uses RAFT-large (`RaftFlow`, torchvision's implementation with its published weights
read from a local file). `DisFlow` (OpenCV's DIS, no weights) stands in when no RAFT checkpoint is
given; its scores are named `fd_dis` so that they are never mistaken for the paper's FD.
Both map two batches of frames [N, 3, H, W] in [0, 1] to the flow [N, 2, H, W] from the first to the
second, in pixels (x, y).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models.optical_flow import Raft_Large_Weights

from any2bokeh.metrics.weights import frozen, load_into, require_file

RAFT = "FD's RAFT-large (torchvision's C_T_SKHT_V2 state dict)"
RAFT_URL = Raft_Large_Weights.C_T_SKHT_V2.url
RAFT_FILE = RAFT_URL.rsplit("/", 1)[-1]


def load_raft(weights: str | Path | None) -> nn.Module:
    """torchvision's RAFT-large with the state dict at `weights` (`raft_large_C_T_SKHT_V2-ff5fadd5.pth`)."""
    path = require_file(weights, RAFT, RAFT_FILE, RAFT_URL)
    network = torchvision.models.optical_flow.raft_large(weights=None)
    load_into(network, path, RAFT)
    return frozen(network)


class RaftFlow(nn.Module):
    """RAFT-large flow: frames scaled to [-1, 1] as torchvision's weights expect, padded to a multiple of 8.

    Args:
        network: a torchvision RAFT (`load_raft`).
        num_flow_updates: refinement iterations (torchvision's default, 12).
        batch_size: frame pairs per forward pass, to bound memory at full resolution.
    """

    metric_name = "fd"

    def __init__(self, network: nn.Module, num_flow_updates: int = 12, batch_size: int = 8) -> None:
        super().__init__()
        if num_flow_updates < 1 or batch_size < 1:
            raise ValueError(f"num_flow_updates and batch_size must be >= 1, got {num_flow_updates}, {batch_size}")
        self.network = frozen(network)
        self.num_flow_updates = num_flow_updates
        self.batch_size = batch_size

    @torch.no_grad()
    def forward(self, first: Tensor, second: Tensor) -> Tensor:
        height, width = first.shape[-2:]
        # RAFT works at 1/8 resolution: replicate-pad the bottom and right edges to a multiple of 8
        padding = (0, -width % 8, 0, -height % 8)
        if min(height + padding[3], width + padding[1]) < 128:
            raise ValueError(
                f"RAFT needs frames of at least 128x128 pixels (its correlation pyramid works at 1/8, 1/16, 1/32 and 1/64), got {height}x{width}"
            )
        flows = []
        for start in range(0, len(first), self.batch_size):
            pair = [
                F.pad(x[start : start + self.batch_size] * 2 - 1, padding, mode="replicate") for x in (first, second)
            ]
            # the last of RAFT's iterative estimates is the final flow
            flows.append(self.network(*pair, num_flow_updates=self.num_flow_updates)[-1])
        return torch.cat(flows)[..., :height, :width]


class DisFlow(nn.Module):
    """OpenCV's DIS optical flow (Kroeger et al. 2016) on 8-bit grayscale frames; needs no weights.

    Args:
        preset: "ultrafast", "fast" or "medium" (OpenCV's DISOpticalFlow presets).
    """

    metric_name = "fd_dis"
    PRESETS = {
        "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
        "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
        "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
    }

    def __init__(self, preset: str = "medium") -> None:
        super().__init__()
        if preset not in self.PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; choose one of {sorted(self.PRESETS)}")
        self.preset = preset

    @torch.no_grad()
    def forward(self, first: Tensor, second: Tensor) -> Tensor:
        dis = cv2.DISOpticalFlow_create(self.PRESETS[self.preset])
        flows = [dis.calc(gray_uint8(a), gray_uint8(b), None) for a, b in zip(first, second)]
        # [N, H, W, 2] -> [N, 2, H, W]
        return torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2).to(first.device, torch.float32)


def gray_uint8(frame: Tensor) -> np.ndarray:
    """[3, H, W] RGB in [0, 1] -> [H, W] uint8 luma (0.299 R + 0.587 G + 0.114 B)."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=frame.device).view(3, 1, 1)
    luma = (frame.float() * weights).sum(0)
    return (luma * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


class FlowFunctionModule(nn.Module):
    """Wraps a plain flow function (first, second) -> [N, 2, H, W], so a metric can hold it like a network."""

    metric_name = "fd_custom"

    def __init__(self, flow: Callable[[Tensor, Tensor], Tensor], metric_name: str = "fd_custom") -> None:
        super().__init__()
        self.flow = flow
        self.metric_name = metric_name

    def forward(self, first: Tensor, second: Tensor) -> Tensor:
        return self.flow(first, second)
