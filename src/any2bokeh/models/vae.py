"""SVD's temporal VAE with encoder -> decoder skip connections (stage 3 of the paper, §3.4).

The decoder of a latent video model loses the fine texture of the in-focus subject. Stage 3 feeds
the encoder's features of the all-in-focus frames back into the decoder: before each up block of
the temporal decoder, a bias-free 1x1 conv of the encoder feature at the same resolution is added.

The wrapped `AutoencoderKLTemporalDecoder` is kept whole under `.vae`, so every pretrained
parameter keeps its name; the only new parameters are `skip_convs.*`. The encoder and decoder
passes below re-run the diffusers submodules in the diffusers order, adding the cache and the
skips, so no diffusers class is forked.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterator

import torch
from diffusers import AutoencoderKLTemporalDecoder
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .phase_upsample import adopt_phase_upsamplers
from .temporal_conv import adopt_temporal_convs


@dataclass
class SkipVAEEncoding:
    """Result of `SkipVAE.encode`.

    latent_dist: the posterior over the (unscaled) latents, [N, 4, H/f, W/f] with f = 2**(n-1).
    skips: the input of each encoder down block, shallow first: skips[i] is [N, C_i, H/2**i, W/2**i].
    """

    latent_dist: DiagonalGaussianDistribution
    skips: list[Tensor]


class SkipVAE(nn.Module):
    """`AutoencoderKLTemporalDecoder` plus one 1x1 skip conv per decoder up block.

    Args:
        vae: the diffusers temporal-decoder VAE (SVD's, or a tiny one); kept as `self.vae`.
        skip_init: constant that every skip-conv weight starts at. The default 0 makes the model at
            initialisation compute exactly what the plain VAE computes; the skip convs still learn,
            because the gradient of a linear map's weight is the product of the upstream gradient and
            its input, which does not vanish at zero weight. The authors start at 1e-5 instead, which
            perturbs the initial output slightly and is available here as `skip_init=1e-5`.
    """

    new_module_names = ("skip_convs",)

    def __init__(self, vae: AutoencoderKLTemporalDecoder, skip_init: float = 0.0):
        super().__init__()
        if not isinstance(vae, AutoencoderKLTemporalDecoder):
            raise TypeError(f"SkipVAE wraps an AutoencoderKLTemporalDecoder, got {type(vae).__name__}")
        n_down, n_up = len(vae.encoder.down_blocks), len(vae.decoder.up_blocks)
        if n_down != n_up:
            raise ValueError(f"SkipVAE needs as many encoder down blocks as decoder up blocks, got {n_down} and {n_up}")
        # the decoder's temporal convs: exact, and right where oneDNN's bf16 Conv3d is not
        adopt_temporal_convs(vae)
        # the decoder's upsamplers can run as phase convs (exact; off unless a renderer switches them on)
        adopt_phase_upsamplers(vae.decoder)
        self.vae = vae
        self.skip_init = float(skip_init)
        self.gradient_checkpointing = False

        block_out = list(vae.config.block_out_channels)
        # Encoder down block i reads block_out[i - 1] channels (block 0 reads conv_in's block_out[0]);
        # decoder up block j reads reversed(block_out)[j - 1] (block 0 reads conv_in's block_out[-1]).
        encoder_in = [block_out[max(i - 1, 0)] for i in range(n_down)]
        reversed_out = block_out[::-1]
        decoder_in = [reversed_out[max(j - 1, 0)] for j in range(n_up)]
        # Up block j works at the resolution of encoder down block n-1-j: skip j reads that feature.
        parameter = next(vae.parameters())
        self.skip_convs = nn.ModuleList(
            nn.Conv2d(
                encoder_in[n_down - 1 - j],
                decoder_in[j],
                kernel_size=1,
                bias=False,
                device=parameter.device,
                dtype=parameter.dtype,
            )
            for j in range(n_up)
        )
        self.reset_skips(self.skip_init)

    def reset_skips(self, value: float = 0.0) -> None:
        """Set every skip-conv weight to the constant `value` (0: exactly the plain VAE)."""
        with torch.no_grad():
            for conv in self.skip_convs:
                conv.weight.fill_(value)

    @property
    def config(self):
        return self.vae.config

    @property
    def dtype(self) -> torch.dtype:
        return self.vae.dtype

    @property
    def device(self) -> torch.device:
        return self.vae.device

    @property
    def num_skips(self) -> int:
        return len(self.skip_convs)

    def decoder_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) of the decoder and the skip convs, the part trained in stage 3 (§3.4).

        Diffusers' decoder mid block runs attention i between resnets i and i + 1 only: with one resnet (the
        tiny VAE) its attention never runs. Those parameters are left out, since they would never get a
        gradient (and DDP with find_unused_parameters=False stops on such parameters).
        """
        mid_block = self.vae.decoder.mid_block
        never_run = mid_block.attentions[len(mid_block.resnets) - 1 :]
        unused = {id(parameter) for attention in never_run for parameter in attention.parameters()}
        for name, parameter in self.named_parameters():
            if name.startswith(("vae.decoder.", "skip_convs.")) and id(parameter) not in unused:
                yield name, parameter

    def enable_gradient_checkpointing(self) -> None:
        self.gradient_checkpointing = True
        self.vae.enable_gradient_checkpointing()

    def disable_gradient_checkpointing(self) -> None:
        self.gradient_checkpointing = False
        self.vae.disable_gradient_checkpointing()

    def _run(self, block: nn.Module, *args: Tensor) -> Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def encode(self, images: Tensor, keep_skips: bool = True) -> SkipVAEEncoding:
        """Encode images and keep the input of every encoder down block.

        Args:
            images: [N, 3, H, W] in [-1, 1] (frames flattened into the batch).
            keep_skips: False returns no skips and frees each feature as the plain encoder does.
        """
        if images.ndim != 4:
            raise ValueError(f"SkipVAE.encode expects images [N, 3, H, W], got shape {tuple(images.shape)}")
        encoder = self.vae.encoder
        hidden = encoder.conv_in(images.to(self.dtype))
        skips = []
        for block in encoder.down_blocks:
            if keep_skips:
                skips.append(hidden)
            hidden = self._run(block, hidden)
        hidden = self._run(encoder.mid_block, hidden)
        hidden = encoder.conv_out(encoder.conv_act(encoder.conv_norm_out(hidden)))
        moments = self.vae.quant_conv(hidden)
        return SkipVAEEncoding(latent_dist=DiagonalGaussianDistribution(moments), skips=skips)

    def decode(self, latents: Tensor, num_frames: int, skips: list[Tensor] | None = None) -> Tensor:
        """Decode with the temporal decoder, adding the encoder skips when given.

        Args:
            latents: [N, 4, h, w] unscaled latents, N = batch * num_frames, frames of a clip contiguous.
            num_frames: frames per clip; the decoder mixes frames within a clip.
            skips: `SkipVAEEncoding.skips` of the frames whose detail to restore, or None for the plain
                decoder.
        Returns:
            [N, 3, H, W] images, nominally in [-1, 1].
        """
        if latents.ndim != 4:
            raise ValueError(f"SkipVAE.decode expects latents [N, C, h, w], got shape {tuple(latents.shape)}")
        batch_frames = latents.shape[0]
        if num_frames < 1 or batch_frames % num_frames:
            raise ValueError(f"num_frames={num_frames} does not divide the {batch_frames} latents")
        if skips is not None and len(skips) != self.num_skips:
            raise ValueError(f"SkipVAE.decode expects {self.num_skips} skip features, got {len(skips)}")
        decoder = self.vae.decoder
        batch_size = batch_frames // num_frames
        image_only_indicator = torch.zeros(batch_size, num_frames, dtype=latents.dtype, device=latents.device)

        hidden = decoder.conv_in(latents.to(self.dtype))
        upscale_dtype = next(itertools.chain(decoder.up_blocks.parameters(), decoder.up_blocks.buffers())).dtype
        hidden = self._run(decoder.mid_block, hidden, image_only_indicator).to(upscale_dtype)
        for j, block in enumerate(decoder.up_blocks):
            if skips is not None:
                feature = skips[self.num_skips - 1 - j]
                if feature.shape[0] != batch_frames or feature.shape[-2:] != hidden.shape[-2:]:
                    raise ValueError(
                        f"skip feature {self.num_skips - 1 - j} has shape {tuple(feature.shape)}, but up block {j} "
                        f"works on {tuple(hidden.shape)}: encode and decode the same frames"
                    )
                hidden = hidden + self.skip_convs[j](feature.to(hidden.dtype))
            hidden = self._run(block, hidden, image_only_indicator)
        hidden = decoder.conv_out(decoder.conv_act(decoder.conv_norm_out(hidden)))

        # hidden: [batch * frames, 3, H, W] -> [batch, 3, frames, H, W] for the temporal output conv
        _, channels, height, width = hidden.shape
        hidden = hidden.reshape(batch_size, num_frames, channels, height, width).permute(0, 2, 1, 3, 4)
        hidden = decoder.time_conv_out(hidden)
        # hidden: [batch, 3, frames, H, W] -> [batch * frames, 3, H, W]
        return hidden.permute(0, 2, 1, 3, 4).reshape(batch_frames, channels, height, width)

    def forward(
        self,
        images: Tensor,
        num_frames: int,
        sample_posterior: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Reconstruct images [N, 3, H, W] in [-1, 1] through the skips (N = batch * num_frames)."""
        encoding = self.encode(images)
        dist = encoding.latent_dist
        latents = dist.sample(generator=generator) if sample_posterior else dist.mode()
        return self.decode(latents, num_frames, skips=encoding.skips)
