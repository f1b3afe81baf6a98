"""LPIPS with the paper's squeeze backbone: torchmetrics' network, its backbone read from a local file.

torchmetrics ships LPIPS's linear heads (`lpips_models/squeeze.pth`) but takes the squeezenet1_1
backbone from torchvision with `weights=DEFAULT`, which downloads. Here the network is built with a
weightless backbone (`pnet_rand=True`) and the backbone is loaded from torchvision's ImageNet state
dict file, given as a local path.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torchmetrics.functional.image.lpips import _NoTrainLpips
from torchvision.models import SqueezeNet1_1_Weights

from any2bokeh.metrics import functional
from any2bokeh.metrics.base import MeanOverVideos, NetworkMetric
from any2bokeh.metrics.weights import load_into, no_downloads, require_file

BACKBONE = "LPIPS's squeezenet1_1 backbone (torchvision's ImageNet state dict)"
BACKBONE_URL = SqueezeNet1_1_Weights.IMAGENET1K_V1.url
BACKBONE_FILE = BACKBONE_URL.rsplit("/", 1)[-1]


def lpips_network(backbone_weights: str | Path | None) -> nn.Module:
    """torchmetrics' LPIPS network with the squeeze backbone, the backbone loaded from `backbone_weights`.

    Args:
        backbone_weights: torchvision's `squeezenet1_1` state dict file (`squeezenet1_1-b8a52dc0.pth`).
    Returns:
        a module mapping two [N, 3, H, W] batches in [-1, 1] to their LPIPS distances [N, 1, 1, 1].
    """
    path = require_file(backbone_weights, BACKBONE, BACKBONE_FILE, BACKBONE_URL)
    # the backbone's keys are checked against torchvision's own model, so a wrong file is named here
    squeezenet = torchvision.models.squeezenet1_1(weights=None)
    load_into(squeezenet, path, BACKBONE)
    with no_downloads():
        network = _NoTrainLpips(net="squeeze", pretrained=True, pnet_rand=True)
    # torchmetrics' SqueezeNet regroups torchvision's `features` layers into slices, keeping each layer's index
    # as its name inside its slice
    layers = {name: layer for slice_ in network.net.slices for name, layer in slice_.named_children()}
    if sorted(layers, key=int) != [str(i) for i in range(len(squeezenet.features))]:
        raise RuntimeError(f"torchmetrics' squeeze slices hold layers {sorted(layers, key=int)}, not torchvision's")
    for index, layer in enumerate(squeezenet.features):
        layers[str(index)].load_state_dict(layer.state_dict())
    return network


class LPIPS(NetworkMetric, MeanOverVideos):
    """LPIPS of videos (squeeze backbone, inputs scaled to [-1, 1]), averaged over frames, then videos.

    update(pred, gt): [B, T, 3, H, W] in [0, 1]. compute(): scalar.

    Args:
        backbone_weights: local path of torchvision's squeezenet1_1 ImageNet state dict.
    """

    higher_is_better = False

    def __init__(self, backbone_weights: str | Path | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.set_network(lpips_network(backbone_weights))

    def update(self, pred: Tensor, gt: Tensor) -> None:
        with torch.no_grad():
            self.add(functional.per_video_lpips(pred, gt, self.network))
