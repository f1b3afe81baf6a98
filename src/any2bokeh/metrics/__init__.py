"""The paper's evaluation metrics (§4.1, Table 1), as torchmetrics and as plain functions (`functional`).

Videos are [B, T, 3, H, W], RGB in [0, 1]. Networks (LPIPS's backbone, RAFT, I3D) load from local
files only; see `weights`.
"""

from any2bokeh.metrics import functional
from any2bokeh.metrics.flow import DisFlow, RaftFlow, load_raft
from any2bokeh.metrics.frechet import FVD, VFID, FrechetClipDistance
from any2bokeh.metrics.i3d import InceptionI3d, load_i3d
from any2bokeh.metrics.lpips import LPIPS, lpips_network
from any2bokeh.metrics.video_metrics import (
    PSNR,
    RM,
    SSIM,
    VEPI,
    FlowDifference,
    missing_test_metrics_notice,
    training_metrics,
)
from any2bokeh.metrics.weights import no_downloads

__all__ = [
    "FVD",
    "LPIPS",
    "PSNR",
    "RM",
    "SSIM",
    "VEPI",
    "VFID",
    "DisFlow",
    "FlowDifference",
    "FrechetClipDistance",
    "InceptionI3d",
    "RaftFlow",
    "functional",
    "load_i3d",
    "load_raft",
    "lpips_network",
    "missing_test_metrics_notice",
    "no_downloads",
    "training_metrics",
]
