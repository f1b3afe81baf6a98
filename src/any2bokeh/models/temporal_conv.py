"""SVD's temporal convolutions, kernel (k, 1, 1), computed as 2-D convolutions over [frames, pixels].

The UNet's temporal ResNet blocks and the VAE decoder's `time_conv_out` are `nn.Conv3d`s whose kernel
spans frames only. oneDNN's bf16 Conv3d weight gradient is wrong on CPUs without AMX (AVX512_CORE and
AVX512_CORE_BF16: AMD EPYC, older Xeons): with 2 frames it returns NaN or values near 1e34, and one
optimiser step then fills the weights with NaN. Its 2-D convolution is right on the same CPUs. A kernel
that spans only frames is a 2-D convolution on the view [B, C, T, H * W] with the weight [O, I, k, 1]:
the same sum, the same parameters and names, so pretrained weights and saved models load unchanged.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .mpi_attention import swap_class


class TemporalConv(nn.Conv3d):
    """An `nn.Conv3d` with kernel (k, 1, 1) and padding (p, 0, 0), run as a 2-D convolution."""

    @classmethod
    def fits(cls, conv: nn.Module) -> bool:
        """Whether `conv` is a plain Conv3d whose kernel spans frames only (stride 1, no dilation or groups)."""
        return (
            type(conv) is nn.Conv3d
            and not isinstance(conv.padding, str)
            and conv.kernel_size[1:] == (1, 1)
            and conv.padding[1:] == (0, 0)
            and conv.stride == (1, 1, 1)
            and conv.dilation == (1, 1, 1)
            and conv.groups == 1
            and conv.padding_mode == "zeros"
        )

    def forward(self, input: Tensor) -> Tensor:
        batch, channels, frames, height, width = input.shape
        # input: [B, C, T, H, W] -> [B, C, T, H * W]; weight: [O, I, k, 1, 1] -> [O, I, k, 1]
        output = F.conv2d(
            input.reshape(batch, channels, frames, height * width),
            self.weight.squeeze(-1),
            self.bias,
            padding=(self.padding[0], 0),
        )
        # [B, O, T', H * W] -> [B, O, T', H, W]
        return output.view(batch, output.shape[1], output.shape[2], height, width)


def adopt_temporal_convs(module: nn.Module) -> int:
    """Make every frame-only Conv3d in `module` a `TemporalConv` in place; returns how many."""
    convs = [conv for conv in module.modules() if TemporalConv.fits(conv)]
    for conv in convs:
        swap_class(conv, TemporalConv)
    return len(convs)
