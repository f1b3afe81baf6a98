"""VFID-I and FVD (Table 1) as torchmetrics: Fréchet distances between the I3D statistics of clips.

The metrics keep running sums of the features and of their outer products in float64 (summed across
processes under DDP), so their memory does not grow with the number of videos.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from any2bokeh.metrics import functional
from any2bokeh.metrics.base import NetworkMetric
from any2bokeh.metrics.i3d import load_i3d


class FrechetClipDistance(NetworkMetric):
    """Fréchet distance between the I3D statistics of the ground-truth clips and of the predicted clips.

    update(pred, gt): [B, T, 3, H, W] in [0, 1]; each video gives T // clip_length clips.

    Args:
        detector: an I3D (`i3d.load_i3d`), or the path of its weights.
        clip_length: frames per clip.
        logits: use the 400 Kinetics logits (FVD) rather than the 1024-d pooled features (VFID-I).
        size: the side frames are resized to (I3D's 224; smaller only to test the code quickly).
        batch_size: clips per I3D forward pass.
    """

    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        detector: nn.Module | str | Path | None,
        clip_length: int,
        logits: bool,
        size: int = 224,
        batch_size: int = 8,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if clip_length < 1:
            raise ValueError(f"clip_length must be >= 1, got {clip_length}")
        if not isinstance(detector, nn.Module):
            detector = load_i3d(detector)
        self.set_network(detector)
        self.clip_length, self.logits, self.size, self.batch_size = clip_length, logits, size, batch_size
        dim = getattr(detector, "num_classes", 400) if logits else detector.feature_dim
        for side in ("real", "fake"):
            self.add_state(f"{side}_sum", default=torch.zeros(dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", default=torch.zeros(dim, dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_count", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, pred: Tensor, gt: Tensor) -> None:
        functional.check_videos(pred, gt, min_frames=self.clip_length)
        for side, videos in (("real", gt), ("fake", pred)):
            features = functional.clip_features(
                videos, self.network, self.clip_length, self.logits, self.size, self.batch_size
            )
            setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + features.sum(0))
            setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + features.T @ features)
            setattr(self, f"{side}_count", getattr(self, f"{side}_count") + len(features))

    def statistics(self, side: str) -> tuple[Tensor, Tensor]:
        """Mean [D] and unbiased covariance [D, D] of the accumulated `side` ("real" or "fake") features."""
        count = getattr(self, f"{side}_count")
        if count < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 clips per side, got {int(count)}")
        mean = getattr(self, f"{side}_sum") / count
        covariance = (getattr(self, f"{side}_outer") - count * torch.outer(mean, mean)) / (count - 1)
        return mean, covariance

    def compute(self) -> Tensor:
        return functional.frechet_distance(*self.statistics("real"), *self.statistics("fake"))


class VFID(FrechetClipDistance):
    """VFID-I: I3D 1024-d pooled features of 10-frame clips at 224^2 in [-1, 1], RGB."""

    def __init__(self, detector: nn.Module | str | Path | None, clip_length: int = 10, **kwargs) -> None:
        super().__init__(detector, clip_length=clip_length, logits=False, **kwargs)


class FVD(FrechetClipDistance):
    """FVD: I3D 400 Kinetics logits of 16-frame clips at 224^2 in [-1, 1]."""

    def __init__(self, detector: nn.Module | str | Path | None, clip_length: int = 16, **kwargs) -> None:
        super().__init__(detector, clip_length=clip_length, logits=True, **kwargs)
