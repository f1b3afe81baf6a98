"""Weight files of the metric networks for the tests: randomly initialised, saved in the published formats."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from any2bokeh.metrics import InceptionI3d


def squeezenet_file(folder: Path, seed: int = 0) -> Path:
    """A random torchvision squeezenet1_1 state dict, where LPIPS's ImageNet backbone file would be."""
    torch.manual_seed(seed)
    path = folder / "squeezenet1_1-b8a52dc0.pth"
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), path)
    return path


def raft_file(folder: Path, seed: int = 0) -> Path:
    """A random torchvision RAFT-large state dict."""
    torch.manual_seed(seed)
    path = folder / "raft_large_C_T_SKHT_V2-ff5fadd5.pth"
    torch.save(torchvision.models.optical_flow.raft_large(weights=None).state_dict(), path)
    return path


def random_i3d(seed: int = 0) -> InceptionI3d:
    """An I3D whose random features differ between clips: He-initialised convolutions (PyTorch's default
    init shrinks the signal through the 60 layers until every clip gives the same features)."""
    torch.manual_seed(seed)
    network = InceptionI3d()
    for module in network.modules():
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return network.eval()


def i3d_file(folder: Path, seed: int = 0) -> Path:
    """`random_i3d` saved as a state dict, as the PyTorch port's rgb_imagenet.pt."""
    path = folder / "rgb_imagenet.pt"
    torch.save(random_i3d(seed).state_dict(), path)
    return path
