"""BokehUNet: SVD's spatio-temporal UNet with MPI attention (§3.2-3.3), one-step bokeh in latent space.

The wrapped diffusers `UNetSpatioTemporalConditionModel` keeps every parameter under its original name
and value, so SVD's pretrained weights load into `bokeh_unet.unet` unchanged. The new modules live beside
it (`BokehUNet.new_module_prefixes`): a conv that turns the all-in-focus latents into condition features
(initialised from `conv_in`'s first 4 input channels), one `MPIAttention` per spatial transformer block and
`k_gain`, the K-dependent gain on `conv_in`'s V_D channels (`KScaledConvIn`). With the gates and the K
layers' last weights at zero, as they start, the output equals SVD's.
"""

from __future__ import annotations

from typing import Iterator

import torch
from diffusers import UNetSpatioTemporalConditionModel
from diffusers.models.attention import TemporalBasicTransformerBlock
from diffusers.models.resnet import AlphaBlender, TemporalResnetBlock
from diffusers.models.transformers.transformer_temporal import (
    TransformerSpatioTemporalModel,
)
from torch import nn

from .conditioning import K_ENCODINGS, LATENT_CHANNELS, fourier_k
from .k_gain import KGain, KScaledConvIn
from .mpi_attention import (
    ContextCheckpoint,
    MPIAttention,
    MPIInputs,
    MPIState,
    MPITransformerBlock,
)
from .temporal_context import adopt_temporal_blocks
from .temporal_conv import adopt_temporal_convs


def _spatial_blocks(unet: UNetSpatioTemporalConditionModel, n_planes: int):
    """Yield (path, block, level, scale, host transformer) for every spatial transformer block.

    The order is down -> mid -> up.

    Down block i gets mask level i, the mid block N-1 and up block i the level of its mirrored down block
    (N-1-i for SVD's four blocks with N = 4); levels are capped at N-1. `scale` is the number of
    downsamplers above the block, which fixes its token grid.
    """
    deepest = len(unet.down_blocks) - 1
    stages = [(f"down_blocks.{i}", block, i) for i, block in enumerate(unet.down_blocks)]
    stages.append(("mid_block", unet.mid_block, deepest))
    stages += [(f"up_blocks.{i}", block, deepest - i) for i, block in enumerate(unet.up_blocks)]
    for stage_path, stage, scale in stages:
        level = n_planes - 1 if stage_path == "mid_block" else min(scale, n_planes - 1)
        for a, transformer in enumerate(getattr(stage, "attentions", None) or []):
            for b, block in enumerate(transformer.transformer_blocks):
                yield f"{stage_path}.attentions.{a}.transformer_blocks.{b}", block, level, scale, transformer


class BokehUNet(nn.Module):
    """SVD UNet + MPI attention.

    Args:
        unet: a diffusers UNetSpatioTemporalConditionModel (real SVD or tiny) with 8 input channels
            (all-in-focus latents + V_D latents) and 4 output channels. Its spatial transformer blocks become
            `MPITransformerBlock`s in place; its parameters are untouched.
        n_planes: N, the number of MPI regions.
        ff_mult: width of the MPI blocks' feed-forward, in multiples of the block width.
        max_key_tokens: cap on the keys per set in MPI attention (None: full block grid); see MPIAttention.
        key_mask, k_residual: how pooled condition keys are masked and how K enters; see MPIAttention.
        k_encoding: E(K), "log" (octaves of blur) or "raw" (the authors'); see `fourier_k`.
        k_gain: K scales the V_D features of `conv_in` (see `any2bokeh.models.k_gain`).
        projection, cond_tokens, ff_twice: the MPI blocks' variant (the release's: "linear", False, True);
            without condition tokens there is no `cond_embed`. See MPIAttention.
        temporal_context: "all" (the temporal blocks see every frame's context token) or "first" (frame 0's,
            as stock SVD and the release); see `temporal_context`.
    """

    new_module_prefixes: tuple[str, ...] = ("cond_embed", "mpi_blocks", "k_gain")

    def __init__(
        self,
        unet: UNetSpatioTemporalConditionModel,
        n_planes: int = 4,
        ff_mult: int = 2,
        max_key_tokens: int | None = 576,
        key_mask: str = "coverage",
        k_residual: bool = True,
        k_encoding: str = "log",
        k_gain: bool = True,
        projection: str = "mlp",
        cond_tokens: bool = True,
        ff_twice: bool = False,
        temporal_context: str = "all",
    ) -> None:
        super().__init__()
        if not isinstance(unet, UNetSpatioTemporalConditionModel):
            raise ValueError(f"BokehUNet: expected a UNetSpatioTemporalConditionModel, got {type(unet).__name__}")
        if unet.config.in_channels != 2 * LATENT_CHANNELS or unet.config.out_channels != LATENT_CHANNELS:
            raise ValueError(
                f"BokehUNet: the UNet must map {2 * LATENT_CHANNELS} to {LATENT_CHANNELS} channels, got "
                f"in_channels={unet.config.in_channels}, out_channels={unet.config.out_channels}"
            )
        if n_planes < 1:
            raise ValueError(f"BokehUNet: n_planes must be >= 1, got {n_planes}")
        if k_encoding not in K_ENCODINGS:
            raise ValueError(f"BokehUNet: k_encoding must be one of {K_ENCODINGS}, got {k_encoding!r}")
        if temporal_context not in ("all", "first"):
            raise ValueError(f"BokehUNet: temporal_context must be 'all' or 'first', got {temporal_context!r}")
        # the temporal ResNet blocks' convs: exact, and right where oneDNN's bf16 Conv3d is not
        adopt_temporal_convs(unet)
        self.unet = unet
        self.n_planes = n_planes
        self.k_encoding = k_encoding
        self.temporal_context = temporal_context
        self._state = MPIState()
        adopt_temporal_blocks(unet, self._state)

        conv_in = unet.conv_in
        cond_dim = conv_in.out_channels
        # new modules are built in float32 on the UNet's device (meta and fake tensors included)
        with torch.device(conv_in.weight.device):
            self.mpi_blocks = nn.ModuleList()
            self.cond_embed = None
            if cond_tokens:
                self.cond_embed = nn.Conv2d(LATENT_CHANNELS, cond_dim, conv_in.kernel_size, padding=conv_in.padding)
        if self.cond_embed is not None:
            with torch.no_grad():
                # the all-in-focus latents are the first 4 input channels of conv_in
                self.cond_embed.weight.copy_(conv_in.weight[:, :LATENT_CHANNELS])
                self.cond_embed.bias.copy_(conv_in.bias)

        self.mpi_block_paths: list[str] = []
        hosts: dict[int, TransformerSpatioTemporalModel] = {}
        for path, block, level, scale, host in _spatial_blocks(unet, n_planes):
            hosts[id(host)] = host
            with torch.device(conv_in.weight.device):
                mpi = MPIAttention(
                    dim=block.dim,
                    cond_dim=cond_dim,
                    num_heads=block.num_attention_heads,
                    head_dim=block.attention_head_dim,
                    level=level,
                    scale=scale,
                    ff_mult=ff_mult,
                    max_key_tokens=max_key_tokens,
                    key_mask=key_mask,
                    k_residual=k_residual,
                    projection=projection,
                    cond_tokens=cond_tokens,
                    ff_twice=ff_twice,
                )
            MPITransformerBlock.adopt(block, mpi, self._state)
            self.mpi_blocks.append(mpi)
            self.mpi_block_paths.append(f"unet.{path}")
        if not self.mpi_blocks:
            raise ValueError("BokehUNet: the UNet has no spatial transformer blocks to host MPI attention")
        self.k_gain = None
        if k_gain:
            with torch.device(conv_in.weight.device):
                self.k_gain = KGain(cond_dim)
            KScaledConvIn.adopt(conv_in, self.k_gain, self._state)
        # the spatio-temporal transformers that checkpoint the MPI blocks (see `_replay_conditioning`)
        object.__setattr__(self, "_mpi_hosts", list(hosts.values()))
        if conv_in.weight.dtype != self.mpi_blocks[0].to_q.weight.dtype:
            for module in (self.cond_embed, self.mpi_blocks, self.k_gain):
                if module is not None:
                    module.to(dtype=conv_in.weight.dtype)
        if unet.is_gradient_checkpointing:
            self.enable_gradient_checkpointing()

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.unet.is_gradient_checkpointing

    def enable_gradient_checkpointing(self, levels: str = "all") -> None:
        """Checkpoint the UNet's blocks, MPI attention included (it runs inside the spatial blocks).

        levels: "all", or "deep": every level but the outermost (down block 0 and the last up block, at the
            latents' own resolution, run without recomputation: more memory, less time).
        """
        if levels not in ("all", "deep"):
            raise ValueError(f"gradient checkpointing levels must be 'all' or 'deep', got {levels!r}")
        self.unet.enable_gradient_checkpointing(gradient_checkpointing_func=ContextCheckpoint(self._state))
        if levels == "deep":
            for outer in (self.unet.down_blocks[0], self.unet.up_blocks[-1]):
                for module in outer.modules():
                    if hasattr(module, "gradient_checkpointing"):
                        module.gradient_checkpointing = False

    def disable_gradient_checkpointing(self) -> None:
        self.unet.disable_gradient_checkpointing()

    def _replay_conditioning(self) -> None:
        """Make checkpointing switched on through `self.unet` directly replay the conditioning too.

        Without this, backward would recompute the MPI blocks without their inputs.
        """
        for host in self._mpi_hosts:
            func = getattr(host, "_gradient_checkpointing_func", None)
            if host.gradient_checkpointing and not isinstance(func, ContextCheckpoint):
                host._gradient_checkpointing_func = ContextCheckpoint(self._state, func)

    def new_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) of the modules that SVD does not have."""
        for name, parameter in self.named_parameters():
            if name.startswith(self.new_module_prefixes):
                yield name, parameter

    def temporal_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) of the UNet's temporal modules, the only ones trained in stage 2.

        These are the temporal transformer blocks, the temporal res blocks, the spatial/temporal mixers and
        the frame-position embedding (`time_pos_embed`) of each spatio-temporal transformer.
        """
        temporal_types = (TemporalBasicTransformerBlock, TemporalResnetBlock, AlphaBlender)
        prefixes = []
        for name, module in self.unet.named_modules():
            if isinstance(module, temporal_types):
                prefixes.append(f"unet.{name}.")
            elif isinstance(module, TransformerSpatioTemporalModel):
                prefixes.append(f"unet.{name}.time_pos_embed.")
        prefixes = tuple(prefixes)
        for name, parameter in self.named_parameters():
            if name.startswith(prefixes):
                yield name, parameter

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        added_time_ids: torch.Tensor,
        *,
        k: torch.Tensor | float,
        mpi_regions: torch.Tensor,
        cond_latents: torch.Tensor,
    ) -> torch.Tensor:
        """Predict the bokeh latents.

        Args:
            sample: [B, T, 8, h, w], all-in-focus latents and V_D latents, concatenated on channels.
            timestep: scalar or [B] (the one-step model uses a fixed value).
            encoder_hidden_states: [B, S, C] shared by all frames (SVD: S = 1), or [B, T, C] one token per
                frame (a 3-D context whose length equals T is taken per frame when T > 1). Per frame, each
                frame's spatial cross-attention sees its own token and the temporal transformer blocks see the
                T tokens as one sequence.
            added_time_ids: [B, 3], (fps, motion bucket, noise augmentation).
            k: blur strength, float, [B] or [B, T].
            mpi_regions: int [B, T, H, W], `mpi_regions(...)` at any resolution.
            cond_latents: [B, T, 4, h, w], the all-in-focus latents.

        Returns:
            [B, T, 4, h, w] predicted latents.
        """
        if sample.ndim != 5:
            raise ValueError(f"BokehUNet: sample must be [B, T, C, h, w], got shape {tuple(sample.shape)}")
        batch, frames, _, height, width = sample.shape
        if cond_latents.shape != (batch, frames, LATENT_CHANNELS, height, width):
            raise ValueError(
                f"BokehUNet: cond_latents must be {(batch, frames, LATENT_CHANNELS, height, width)}, "
                f"got {tuple(cond_latents.shape)}"
            )
        if mpi_regions.ndim != 4 or tuple(mpi_regions.shape[:2]) != (batch, frames):
            raise ValueError(
                f"BokehUNet: mpi_regions must be [{batch}, {frames}, H, W], got {tuple(mpi_regions.shape)}"
            )
        if encoder_hidden_states.ndim != 3 or encoder_hidden_states.shape[0] != batch:
            raise ValueError(
                f"BokehUNet: encoder_hidden_states must be [{batch}, S, C], got {tuple(encoder_hidden_states.shape)}"
            )
        k = torch.as_tensor(k, device=sample.device)
        if k.ndim == 0:
            k = k.expand(batch, frames)
        elif k.shape == (batch,):
            k = k[:, None].expand(batch, frames)
        elif k.shape != (batch, frames):
            raise ValueError(f"BokehUNet: k must be a float, [{batch}] or [{batch}, {frames}], got {tuple(k.shape)}")

        cond_features = None
        if self.cond_embed is not None:
            # cond_latents: [B, T, 4, h, w] -> [B * T, 4, h, w] -> features [B * T, C0, h, w]
            cond_features = self.cond_embed(cond_latents.flatten(0, 1).to(self.cond_embed.weight.dtype))
        inputs = MPIInputs(
            cond_features=cond_features,
            # mpi_regions: [B, T, H, W] -> [B * T, H, W]
            regions=mpi_regions.flatten(0, 1).to(sample.device),
            # k: [B, T] -> [B * T, 32]
            k_embedding=fourier_k(k.reshape(batch * frames), self.k_encoding),
            latent_size=(height, width),
            num_frames=frames,
            per_frame_context=frames > 1 and encoder_hidden_states.shape[1] == frames,
            first_frame_context=self.temporal_context == "first",
        )
        self._replay_conditioning()
        with self._state.use(inputs):
            return self.unet(sample, timestep, encoder_hidden_states, added_time_ids, return_dict=False)[0]
