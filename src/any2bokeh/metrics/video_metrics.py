"""The per-video metrics of Table 1 as torchmetrics (PSNR, SSIM, RM, FD, VEPI), and the metrics of training.

Each `update` takes videos [B, T, 3, H, W] in [0, 1]; the states are sums that DDP adds up across
processes, so `compute` gives the mean over every video seen by every process. LPIPS is in `lpips`,
VFID-I and FVD in `frechet`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from any2bokeh.metrics import functional
from any2bokeh.metrics.base import MeanOverVideos, NetworkMetric
from any2bokeh.metrics.flow import FlowFunctionModule
from any2bokeh.metrics.lpips import LPIPS


class PSNR(PeakSignalNoiseRatio):
    """PSNR of each frame (data range 1), averaged over all frames: the paper's evaluation and `val/psnr`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(data_range=1.0, dim=(1, 2, 3), **kwargs)

    def update(self, pred: Tensor, gt: Tensor) -> None:
        functional.check_videos(pred, gt)
        super().update(functional.frames(pred), functional.frames(gt))


class SSIM(StructuralSimilarityIndexMeasure):
    """SSIM of each frame (data range 1), averaged over all frames."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(data_range=1.0, **kwargs)

    def update(self, pred: Tensor, gt: Tensor) -> None:
        functional.check_videos(pred, gt)
        super().update(functional.frames(pred), functional.frames(gt))


class RM(MeanOverVideos):
    """Relation metric (temporal consistency): see `functional.per_video_rm`."""

    higher_is_better = False

    def update(self, pred: Tensor, gt: Tensor) -> None:
        self.add(functional.per_video_rm(pred, gt))


class VEPI(MeanOverVideos):
    """VEPI (edge preservation of the subject): update(inputs, renders, masks), see `functional.per_video_vepi`.

    Videos without a valid frame (empty mask, constant edges) are left out and counted in `skipped`.
    """

    higher_is_better = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("skipped", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, inputs: Tensor, renders: Tensor, masks: Tensor) -> None:
        scores = functional.per_video_vepi(inputs, renders, masks)
        undefined = scores.isnan()
        self.skipped += int(undefined.sum())
        self.add(scores[~undefined])


class FlowDifference(NetworkMetric, MeanOverVideos):
    """Flow difference (FD): see `functional.per_video_flow_difference`.

    Args:
        flow: `flow.RaftFlow` (the paper's FD), `flow.DisFlow` (weightless, reported as `fd_dis`), or any
            function (first, second) [N, 3, H, W] -> [N, 2, H, W].
    `name` is the key to report it under: "fd" for RAFT, "fd_dis" for DIS.
    """

    higher_is_better = False

    def __init__(self, flow: nn.Module | Callable[[Tensor, Tensor], Tensor], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.set_network(flow if isinstance(flow, nn.Module) else FlowFunctionModule(flow))
        self.name = getattr(self.network, "metric_name", "fd_custom")

    def update(self, pred: Tensor, gt: Tensor) -> None:
        self.add(functional.per_video_flow_difference(pred, gt, self.network))


# ---------------------------------------------------------------- the metrics of validation and test
#: the weight files `training_metrics` accepts, and the metrics they add to the test split
TRAINING_METRIC_WEIGHTS = {"lpips_backbone": ("rm", "lpips")}
TEST_NOTICE = (
    "test reports PSNR and SSIM only: set module.metric_weights.lpips_backbone=<path of torchvision's "
    "squeezenet1_1-b8a52dc0.pth> to add RM and LPIPS"
)


def training_metrics(metric_weights: Mapping[str, str | Path | None] | None = None) -> nn.ModuleDict:
    """The metrics of the training stages: {"val": ..., "test": ...} MetricCollections over videos in [0, 1].

    Validation reports PSNR and SSIM. The test adds RM and LPIPS when `metric_weights["lpips_backbone"]`
    names LPIPS's backbone file (`module.metric_weights` in the training config).
    """
    weights = dict(metric_weights or {})
    unknown = sorted(set(weights) - set(TRAINING_METRIC_WEIGHTS))
    if unknown:
        raise KeyError(f"unknown metric_weights keys {unknown}; known: {sorted(TRAINING_METRIC_WEIGHTS)}")
    splits = {}
    for split in ("val", "test"):
        metrics: dict[str, Metric] = {"psnr": PSNR(), "ssim": SSIM()}
        if split == "test" and weights.get("lpips_backbone"):
            metrics.update(rm=RM(), lpips=LPIPS(weights["lpips_backbone"]))
        splits[split] = MetricCollection(metrics, prefix=f"{split}/")
    return nn.ModuleDict(splits)


def missing_test_metrics_notice(metrics: MetricCollection) -> str | None:
    """The one-line notice for a test split that reports PSNR and SSIM alone; None when it has more."""
    return TEST_NOTICE if set(metrics.keys(keep_base=True)) <= {"psnr", "ssim"} else None
