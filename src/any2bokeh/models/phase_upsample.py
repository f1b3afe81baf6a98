"""Nearest x2 upsampling then a 3x3 conv, computed as four 2x2 convs on the small image (exact).

diffusers' `Upsample2D` (every up block of SVD's temporal decoder) doubles the image by repeating each pixel,
then runs a 3x3 conv on the 4x larger image. Output pixel (2i + a, 2j + b) only ever sees input rows
{i - 1, i} (a = 0) or {i, i + 1} (a = 1), and the same for columns, with the 3x3 taps that land on the same
input pixel summed. So the same output is four 2x2 convs ("phases") of the input padded by one pixel, each
with its summed weights, interleaved by a pixel shuffle: 16 instead of 36 multiply-adds per input pixel and
output channel, and no 4x intermediate image. Only the order of the additions differs (exact in float64).

`PhaseUpsample2D.adopt(upsampler)` changes a block's class in place (the parameters keep their names and
values); `phase` switches between the two computations, off by default (`set_phase_upsampling`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.upsampling import Upsample2D
from torch import Tensor, nn

# for output phase a (0 or 1) and the two input rows it reads (first, second), which 3x3 kernel rows sum:
# a = 0 reads rows i-1 (kernel row 0) and i (rows 1 + 2); a = 1 reads i (rows 0 + 1) and i+1 (row 2)
_TAPS = {0: ((0,), (1, 2)), 1: ((0, 1), (2,))}


def phase_weights(weight: Tensor) -> Tensor:
    """A 3x3 kernel [O, C, 3, 3] -> the four phases' 2x2 kernels, [4 * O, C, 2, 2] in (a, b) order 00, 01, 10, 11."""
    phases = []
    for a in (0, 1):
        rows = [weight[:, :, list(taps)].sum(dim=2) for taps in _TAPS[a]]  # 2 x [O, C, 3]
        for b in (0, 1):
            kernel = [[row[:, :, list(taps)].sum(dim=2) for taps in _TAPS[b]] for row in rows]  # 2 x 2 x [O, C]
            phases.append(torch.stack([torch.stack(pair, dim=-1) for pair in kernel], dim=-2))  # [O, C, 2, 2]
    return torch.cat(phases)


def phase_upsample_conv(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """conv3x3(nearest_x2(x)) with padding 1: x [N, C, H, W] -> [N, O, 2H, 2W]."""
    out_channels = weight.shape[0]
    height, width = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    # all four phases in one conv: [N, 4 * O, H + 1, W + 1]; phase (a, b) takes rows a.., columns b..
    every = F.conv2d(padded, phase_weights(weight).to(x.dtype))
    every = every.unflatten(1, (2, 2, out_channels))  # [N, a, b, O, H + 1, W + 1]
    phases = torch.stack(
        [torch.stack([every[:, a, b, :, a : a + height, b : b + width] for b in (0, 1)], 2) for a in (0, 1)], 2
    )  # [N, O, a, b, H, W]
    # interleave: [N, O, a, b, H, W] -> [N, O, H, a, W, b] -> [N, O, 2H, 2W]
    out = phases.permute(0, 1, 4, 2, 5, 3).reshape(x.shape[0], out_channels, 2 * height, 2 * width)
    return out if bias is None else out + bias.to(x.dtype)[:, None, None]


class PhaseUpsample2D(Upsample2D):
    """diffusers' Upsample2D that can compute its upsample-and-conv as four phase convs (`phase = True`)."""

    phase: bool = False

    @classmethod
    def adopt(cls, upsampler: Upsample2D) -> "PhaseUpsample2D":
        conv = getattr(upsampler, "conv", None)
        if (
            type(upsampler) is not Upsample2D
            or not upsampler.use_conv
            or upsampler.use_conv_transpose
            or not upsampler.interpolate
            or upsampler.norm is not None
            or not isinstance(conv, nn.Conv2d)
            or conv.kernel_size != (3, 3)
            or conv.padding != (1, 1)
            or conv.stride != (1, 1)
            or conv.dilation != (1, 1)
            or conv.groups != 1
        ):
            raise ValueError(
                f"PhaseUpsample2D.adopt: only a nearest x2 upsample with a plain 3x3 conv, got {upsampler}"
            )
        upsampler.__class__ = cls
        return upsampler

    def forward(self, hidden_states: Tensor, output_size: int | None = None, *args, **kwargs) -> Tensor:
        if not self.phase or output_size is not None:
            return super().forward(hidden_states, output_size, *args, **kwargs)
        return phase_upsample_conv(hidden_states, self.conv.weight, self.conv.bias)


def adopt_phase_upsamplers(module: nn.Module) -> int:
    """Make every adoptable Upsample2D under `module` a PhaseUpsample2D (off); returns how many."""
    count = 0
    for child in module.modules():
        if type(child) is Upsample2D:
            try:
                PhaseUpsample2D.adopt(child)
            except ValueError:
                continue
            count += 1
    return count


def set_phase_upsampling(module: nn.Module, on: bool) -> int:
    """Switch the phase computation of every PhaseUpsample2D under `module`; returns how many."""
    upsamplers = [child for child in module.modules() if isinstance(child, PhaseUpsample2D)]
    for upsampler in upsamplers:
        upsampler.phase = bool(on)
    return len(upsamplers)
