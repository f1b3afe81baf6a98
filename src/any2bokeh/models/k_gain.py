"""K scales the defocus features: SVD's `conv_in` with a K-dependent gain on its V_D input channels.

    conv_in([a, v]) = W_a * a + (1 + gamma(E(K))) * (W_v * v) + b        gamma: [C0] per frame, zero at init

The circle of confusion is r = K |d - d_f| (eq. 1): K multiplies the disparity difference V_D at every
pixel. The UNet reads V_D through the last 4 input channels of `conv_in`, so a per-channel gain on that
part of the convolution, learnt from E(K), hands the network the product the optics asks for from the first
layer on. gamma's last layer starts at zero (the UNet is SVD's at initialisation) and has a gradient from
the first step wherever the V_D features matter. Without it K reaches the network only additively (the
MPI blocks' Phi_M), and the product has to be learnt by the deeper non-linear layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning import FOURIER_DIM, LATENT_CHANNELS
from .mpi_attention import MPIState, swap_class


class KGain(nn.Module):
    """gamma(E(K)): [N, 32] -> [N, channels], an MLP whose last layer starts at zero."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(FOURIER_DIM, channels), nn.SiLU(), nn.Linear(channels, channels))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, k_embedding: torch.Tensor) -> torch.Tensor:
        return self.mlp(k_embedding.to(self.mlp[0].weight.dtype))


class KScaledConvIn(nn.Conv2d):
    """SVD's `conv_in` whose V_D half is scaled by `gain(E(K))` during a BokehUNet call.

    Made by `KScaledConvIn.adopt(conv, gain, state)`, which changes the class of the existing conv in place:
    its weight and bias keep their names and values, and the gain is held by reference, so the UNet's state
    dict stays SVD's. Outside a BokehUNet call (no current `MPIInputs`) it is the plain convolution.
    """

    _k_gain: KGain
    _mpi_state: MPIState

    @classmethod
    def adopt(cls, conv: nn.Conv2d, gain: KGain, state: MPIState) -> "KScaledConvIn":
        plain = type(conv) is nn.Conv2d and conv.groups == 1 and conv.padding_mode == "zeros"
        if not plain or conv.in_channels != 2 * LATENT_CHANNELS:
            raise ValueError(
                f"KScaledConvIn.adopt: expected SVD's conv_in, a plain Conv2d (groups=1, zero padding) with "
                f"{2 * LATENT_CHANNELS} input channels, got {type(conv).__name__} with "
                f"{getattr(conv, 'in_channels', '?')} input channels, groups={getattr(conv, 'groups', '?')}, "
                f"padding_mode={getattr(conv, 'padding_mode', '?')!r}"
            )
        return swap_class(conv, cls, _k_gain=gain, _mpi_state=state)

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        """sample: [batch * frames, 8, h, w] (all-in-focus latents, V_D latents) -> [batch * frames, C0, h, w]."""
        output = super().forward(sample)
        inputs = self._mpi_state.current
        if inputs is None:
            return output
        # the V_D part of the convolution alone: [BT, 4, h, w] -> [BT, C0, h, w]
        defocus = F.conv2d(
            sample[:, LATENT_CHANNELS:],
            self.weight[:, LATENT_CHANNELS:],
            None,
            self.stride,
            self.padding,
            self.dilation,
        )
        gain = self._k_gain(inputs.k_embedding).to(output.dtype)
        # gain: [BT, C0] -> [BT, C0, 1, 1]
        return output + gain[:, :, None, None] * defocus
