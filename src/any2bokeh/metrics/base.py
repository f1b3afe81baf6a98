"""Two kinds of torchmetrics Metric that the evaluation metrics build on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric

from any2bokeh.metrics.weights import frozen


class NetworkMetric(Metric):
    """A torchmetrics Metric that runs a frozen network kept out of its state dict.

    The network's weights come from a local file, so they have no place in the training checkpoints
    that hold this metric: a checkpoint written with the metric configured still loads without it,
    and the other way round. `.to(device)` still moves the network with the metric's states.
    """

    def set_network(self, network: nn.Module) -> None:
        # stored outside nn.Module's registry (no state dict entries, not trained, not wrapped by DDP)
        object.__setattr__(self, "_network", frozen(network))

    @property
    def network(self) -> nn.Module:
        return self._network

    def _apply(self, fn: Callable, *args: Any, **kwargs: Any) -> nn.Module:
        this = super()._apply(fn, *args, **kwargs)
        self._network._apply(fn)
        return this


class MeanOverVideos(Metric):
    """Mean over videos of a per-video score; a subclass's update adds [B] scores with `add`."""

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum")

    def add(self, scores: Tensor) -> None:
        self.total += scores.detach().double().sum()
        self.count += scores.numel()

    def compute(self) -> Tensor:
        if self.count == 0:
            raise ValueError(f"{type(self).__name__} has no video to average: call update first")
        return (self.total / self.count).float()
