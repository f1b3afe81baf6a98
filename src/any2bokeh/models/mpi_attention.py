"""MPI attention (eq. 4): a gated attention block inside every spatial transformer block of the SVD UNet.

    x <- x + Phi_M(E(K))                                   (k_residual: ungated, Phi_M zero at init)
    x <- x + tanh(gate_attn) * TS(Attn([x, Phi_A(V_A)], [1, M]))
    x <- x + tanh(gate_ff)   * FF(x)

The block sits between the self-attention and the cross-attention of a diffusers `BasicTransformerBlock`
(GLIGEN's place). Its queries are the block's visual tokens modulated by the K embedding; its keys are the
visual tokens and the condition tokens V_A (the all-in-focus latents); the key mask lets every visual token
through and a condition token only where the pixel lies in this block's MPI level (`regions <= level`).
Only the visual tokens' outputs are kept (TS), so only they are used as queries.

Three choices of this implementation:
- K enters the residual stream of every spatial block without a gate (as the authors' release adds it to every
  spatial token), through Phi_M whose last layer starts at zero. The block is still the identity at
  initialisation, but Phi_M's last layer has a gradient from the first step and K then reaches every later
  layer at once, while the gated attention opens slowly. The queries are still the K-modulated tokens, as the
  paper's eq. (4) has them. `k_residual=False` modulates only the queries and keys (the gated path alone).
- The keys (visual and condition) are average-pooled to at most `max_key_tokens` per set (576 by default),
  while the queries stay at full resolution; `max_key_tokens=None` attends at the block grid, as the paper
  does. A second full-resolution token set in the shallow blocks would add ~47% FLOPs at 576x1024; pooled
  keys add ~13% (benchmarks/model.py).
- The mask of a pooled condition key (`key_mask`): "any" allows a key when any pixel under it is allowed, so
  thin in-focus structures survive coarse grids; "coverage" adds log(fraction of allowed pixels) to the
  key's attention logit (-inf at 0), so a key that one noisy pixel opens weighs 1/cell-area of a fully
  allowed one. Both are the binary mask at the full block grid.

The authors' released model computes a variant of this block, available as options (`AnyToBokeh.from_release`
sets them): Phi_M and Phi_A as one linear layer each (`projection="linear"`), no condition keys at all
(`cond_tokens=False`: its key mask was all zeros, so only the visual tokens were attended), and the
feed-forward applied twice under one gate, after two norms (`ff_twice=True`):
x <- x + tanh(gate_ff) * (FF(norm_ff(x)) + FF(norm_ff2(x))).

Diffusers hands the spatial blocks nothing per call, so the per-call conditioning (`MPIInputs`) lives in an
`MPIState` shared by the blocks, which `BokehUNet.forward` fills for the duration of one call. Outside such a
call the blocks are exactly SVD's blocks.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from diffusers.models.attention import (
    BasicTransformerBlock,
    FeedForward,
    _chunked_feed_forward,
)
from torch import nn

from .conditioning import FOURIER_DIM


@dataclass
class MPIInputs:
    """Per-call conditioning shared by every MPI block.

    Attributes:
        cond_features: [batch * frames, C0, h, w], the condition tokens' features at latent resolution (None
            without condition tokens).
        regions: int64 [batch * frames, H, W], MPI region per pixel (any resolution).
        k_embedding: [batch * frames, 32], E(K).
        latent_size: (h, w) of the UNet input.
        num_frames: frames per sample.
        per_frame_context: the cross-attention context holds one token per frame ([B, T, C]) instead of one
            shared sequence.
        first_frame_context: the temporal blocks see frame 0's context token only (SVD's stock behaviour,
            and the release's) instead of every frame's.
    """

    cond_features: torch.Tensor | None
    regions: torch.Tensor
    k_embedding: torch.Tensor
    latent_size: tuple[int, int]
    num_frames: int
    per_frame_context: bool = False
    first_frame_context: bool = False
    _masks: dict = field(default_factory=dict, repr=False)

    def grid(self, scale: int) -> tuple[int, int]:
        """Token grid of a block `scale` downsamplers deep (each stride-2 conv rounds up)."""
        height, width = self.latent_size
        for _ in range(scale):
            height, width = (height + 1) // 2, (width + 1) // 2
        return height, width

    def key_coverage(self, level: int, size: tuple[int, int]) -> torch.Tensor:
        """Float [batch * frames, kh * kw]: the fraction of each key cell's pixels with `regions <= level`."""
        key = (level, size)
        if key not in self._masks:
            allowed = (self.regions <= level).to(torch.float32)
            # allowed: [BT, H, W] -> [BT, 1, kh, kw] -> [BT, kh * kw]
            self._masks[key] = F.adaptive_avg_pool2d(allowed[:, None], size).flatten(1)
        return self._masks[key]

    def key_mask(self, level: int, size: tuple[int, int]) -> torch.Tensor:
        """Bool [batch * frames, kh * kw]: a condition key is allowed when any pixel under it has `regions <= level`."""
        return self.key_coverage(level, size) > 0

    def key_bias(self, level: int, size: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
        """Additive logit bias [batch * frames, kh * kw]: log(coverage), -inf where no pixel is allowed."""
        return self.key_coverage(level, size).log().to(dtype)

    def frame_context(self, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """Each frame's own context token out of diffusers' frame-repeated context.

        Diffusers repeats the context [B, S, C] to [B * T, S, C]; with per-frame context S = T and frame t
        of sample b must see only token t: [B * T, T, C] -> [B * T, 1, C].
        """
        if not self.per_frame_context:
            return encoder_hidden_states
        batch_frames, length, channels = encoder_hidden_states.shape
        # [B * T, T, C] -> [B, T, T, C] -> diagonal [B, C, T] -> [B * T, 1, C]
        repeated = encoder_hidden_states.reshape(batch_frames // length, length, length, channels)
        return repeated.diagonal(dim1=1, dim2=2).transpose(1, 2).reshape(batch_frames, 1, channels)


class MPIState:
    """Holder of the current call's `MPIInputs`; shared by BokehUNet and its MPI blocks."""

    def __init__(self) -> None:
        self.current: MPIInputs | None = None

    @contextlib.contextmanager
    def use(self, inputs: MPIInputs | None) -> Iterator[None]:
        previous, self.current = self.current, inputs
        try:
            yield
        finally:
            self.current = previous


class ContextCheckpoint:
    """Gradient checkpointing function that replays the conditioning of the forward pass.

    Diffusers calls `func(module, *args)`; backward recomputes `module` after `BokehUNet.forward` has
    returned, so the inputs current at forward time are captured and set again for the recomputation.

    Args:
        state: the shared conditioning holder.
        checkpoint_func: a diffusers-style `func(callable, *args)` to delegate to; None uses
            `torch.utils.checkpoint.checkpoint(..., use_reentrant=False)`.
    """

    def __init__(self, state: MPIState, checkpoint_func=None) -> None:
        self.state = state
        self.checkpoint_func = checkpoint_func

    def __call__(self, module: nn.Module, *args):
        inputs = self.state.current

        def run(*run_args):
            with self.state.use(inputs):
                return module(*run_args)

        if self.checkpoint_func is not None:
            return self.checkpoint_func(run, *args)
        return torch.utils.checkpoint.checkpoint(run, *args, use_reentrant=False)


def key_grid(grid: tuple[int, int], max_key_tokens: int | None) -> tuple[int, int]:
    """The grid the keys are pooled to: the block grid halved until it holds at most `max_key_tokens`."""
    height, width = grid
    if max_key_tokens is None:
        return height, width
    while height * width > max_key_tokens and (height > 1 or width > 1):
        height, width = (height + 1) // 2, (width + 1) // 2
    return height, width


class MPIAttention(nn.Module):
    """The gated MPI block of one spatial transformer block (eq. 4).

    Args:
        dim: width of the block's visual tokens.
        cond_dim: channels of the condition features (the UNet's first block width).
        num_heads, head_dim: attention heads, as in the host block.
        level: MPI mask level, 0..N-1 (`regions <= level` is attended).
        scale: number of downsamplers above the block; fixes its token grid.
        ff_mult: hidden width of the GEGLU feed-forward, in multiples of `dim`.
        max_key_tokens: keys (visual and condition) are average-pooled to at most this many tokens per set,
            which bounds the cost at high resolution; None attends at the full block grid.
        key_mask: "any" or "coverage", how a pooled condition key is masked (see the module docstring).
        k_residual: add Phi_M(E(K)) to the residual stream without a gate (True) or only to the queries and
            keys of the gated attention (False).
        projection: Phi_M and Phi_A as "mlp" (Linear, SiLU, Linear) or "linear" (one Linear, the release's).
        cond_tokens: attend to the condition tokens V_A (False: the visual tokens only, as the release did).
        ff_twice: the release's feed-forward, FF(norm_ff(x)) + FF(norm_ff2(x)) under one gate.
    """

    KEY_MASKS = ("any", "coverage")
    PROJECTIONS = ("mlp", "linear")

    def __init__(
        self,
        dim: int,
        cond_dim: int,
        num_heads: int,
        head_dim: int,
        level: int,
        scale: int,
        ff_mult: int = 2,
        max_key_tokens: int | None = 576,
        key_mask: str = "coverage",
        k_residual: bool = True,
        projection: str = "mlp",
        cond_tokens: bool = True,
        ff_twice: bool = False,
    ) -> None:
        super().__init__()
        if dim <= 0 or cond_dim <= 0 or num_heads <= 0 or head_dim <= 0:
            raise ValueError(
                f"MPIAttention: dim={dim}, cond_dim={cond_dim}, num_heads={num_heads}, head_dim={head_dim} "
                "must all be positive"
            )
        if level < 0 or scale < 0:
            raise ValueError(f"MPIAttention: level={level} and scale={scale} must be >= 0")
        if ff_mult < 1:
            raise ValueError(f"MPIAttention: ff_mult must be >= 1, got {ff_mult}")
        if max_key_tokens is not None and max_key_tokens < 1:
            raise ValueError(f"MPIAttention: max_key_tokens must be >= 1 or None, got {max_key_tokens}")
        if key_mask not in self.KEY_MASKS:
            raise ValueError(f"MPIAttention: key_mask must be one of {self.KEY_MASKS}, got {key_mask!r}")
        if projection not in self.PROJECTIONS:
            raise ValueError(f"MPIAttention: projection must be one of {self.PROJECTIONS}, got {projection!r}")
        self.level = level
        self.scale = scale
        self.key_mask = key_mask
        self.k_residual = bool(k_residual)
        self.projection = projection
        self.cond_tokens = bool(cond_tokens)
        self.ff_twice = bool(ff_twice)
        self.num_heads = num_heads
        self.max_key_tokens = max_key_tokens
        inner_dim = num_heads * head_dim

        # Phi_M: E(K) -> a token offset; its last layer starts at zero, so the block is the identity at first
        self.k_proj = _projection(FOURIER_DIM, dim, projection)
        # Phi_A: condition features -> condition tokens
        self.cond_proj = _projection(cond_dim, dim, projection) if self.cond_tokens else None
        self.norm_attn = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner_dim, bias=False)
        self.to_k = nn.Linear(dim, inner_dim, bias=False)
        self.to_v = nn.Linear(dim, inner_dim, bias=False)
        self.to_out = nn.Linear(inner_dim, dim)
        self.norm_ff = nn.LayerNorm(dim)
        self.norm_ff2 = nn.LayerNorm(dim) if self.ff_twice else None
        self.ff = FeedForward(dim, mult=ff_mult, activation_fn="geglu")
        self.gate_attn = nn.Parameter(torch.zeros(()))
        self.gate_ff = nn.Parameter(torch.zeros(()))
        nn.init.zeros_(self.k_proj[-1].weight)
        nn.init.zeros_(self.k_proj[-1].bias)

    def extra_repr(self) -> str:
        return (
            f"level={self.level}, scale={self.scale}, heads={self.num_heads}, "
            f"max_key_tokens={self.max_key_tokens}, key_mask={self.key_mask}, k_residual={self.k_residual}, "
            f"projection={self.projection}, cond_tokens={self.cond_tokens}, ff_twice={self.ff_twice}"
        )

    def forward(self, hidden_states: torch.Tensor, inputs: MPIInputs) -> torch.Tensor:
        """hidden_states: [batch * frames, h * w, dim] -> same shape."""
        batch_frames, length, dim = hidden_states.shape
        height, width = inputs.grid(self.scale)
        if height * width != length:
            raise ValueError(
                f"MPIAttention(scale={self.scale}): {length} tokens do not match the {height}x{width} grid "
                f"of latents {inputs.latent_size}"
            )
        keys_size = key_grid((height, width), self.max_key_tokens)

        # eq. (4): Q + Phi_M(E(K)); [BT, dim] -> [BT, 1, dim]
        visual = hidden_states + self.k_proj(inputs.k_embedding.to(hidden_states.dtype))[:, None]
        if self.k_residual:
            hidden_states = visual
        visual_keys = visual
        if keys_size != (height, width):
            # [BT, h * w, dim] -> [BT, dim, h, w] -> pooled [BT, kh * kw, dim]
            grid = visual.transpose(1, 2).reshape(batch_frames, dim, height, width)
            visual_keys = F.adaptive_avg_pool2d(grid, keys_size).flatten(2).transpose(1, 2)
        query = self.to_q(self.norm_attn(visual))
        mask = None
        if self.cond_tokens:
            # condition features [BT, C0, h0, w0] -> [BT, C0, kh, kw] -> tokens [BT, kh * kw, dim]
            cond = F.adaptive_avg_pool2d(inputs.cond_features.to(hidden_states.dtype), keys_size)
            context = self.norm_attn(torch.cat([visual_keys, self.cond_proj(cond.flatten(2).transpose(1, 2))], dim=1))
            # key mask [1, M]: visual keys always allowed, so no query row is fully masked
            if self.key_mask == "coverage":
                bias = inputs.key_bias(self.level, keys_size, query.dtype)
                mask = torch.cat([torch.zeros_like(bias), bias], dim=1)
            else:
                allowed = inputs.key_mask(self.level, keys_size)
                mask = torch.cat([torch.ones_like(allowed), allowed], dim=1)
            # [BT, Lk] -> [BT, 1, 1, Lk], broadcast over heads and queries
            mask = mask[:, None, None, :]
        else:
            context = self.norm_attn(visual_keys)
        key, value = self.to_k(context), self.to_v(context)
        # [BT, L, heads * d] -> [BT, heads, L, d]
        query, key, value = (t.unflatten(-1, (self.num_heads, -1)).transpose(1, 2) for t in (query, key, value))
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        # [BT, heads, L, d] -> [BT, L, heads * d]
        attended = attended.transpose(1, 2).flatten(2)

        hidden_states = hidden_states + self.gate_attn.tanh() * self.to_out(attended)
        dense = self.ff(self.norm_ff(hidden_states))
        if self.ff_twice:
            dense = dense + self.ff(self.norm_ff2(hidden_states))
        return hidden_states + self.gate_ff.tanh() * dense


def _projection(in_dim: int, dim: int, kind: str) -> nn.Sequential:
    """Phi_M or Phi_A: "mlp" (Linear, SiLU, Linear) or "linear" (one Linear); the last layer is `[-1]`."""
    if kind == "linear":
        return nn.Sequential(nn.Linear(in_dim, dim))
    return nn.Sequential(nn.Linear(in_dim, dim), nn.SiLU(), nn.Linear(dim, dim))


def swap_class(module: nn.Module, cls: type, **references) -> nn.Module:
    """Give `module` the subclass `cls` in place and hold `references` as plain attributes.

    The references are not registered as submodules, so the module's state dict keeps exactly its names.
    """
    module.__class__ = cls
    for name, value in references.items():
        object.__setattr__(module, name, value)
    return module


class MPITransformerBlock(BasicTransformerBlock):
    """diffusers' BasicTransformerBlock with MPI attention between self- and cross-attention.

    Made by `MPITransformerBlock.adopt(block, mpi)`, which changes the class of an existing block in place:
    every parameter keeps its name and value. The MPI module is held by reference, not as a child, so the
    UNet's state dict stays exactly SVD's.
    """

    _mpi_attention: MPIAttention
    _mpi_state: MPIState

    @classmethod
    def adopt(cls, block: BasicTransformerBlock, mpi: MPIAttention, state: MPIState) -> "MPITransformerBlock":
        if not isinstance(block, BasicTransformerBlock) or isinstance(block, MPITransformerBlock):
            raise ValueError(
                "MPITransformerBlock.adopt: expected a plain BasicTransformerBlock, "
                f"got {type(block).__name__} "
                "(a UNet can be wrapped by one BokehUNet only)"
            )
        if block.norm_type != "layer_norm" or block.pos_embed is not None or block.only_cross_attention:
            raise ValueError(
                "MPITransformerBlock.adopt: only SVD's layer-norm blocks without positional embedding are "
                f"supported, got norm_type={block.norm_type!r}, pos_embed={block.pos_embed}, "
                f"only_cross_attention={block.only_cross_attention}"
            )
        return swap_class(block, cls, _mpi_attention=mpi, _mpi_state=state)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        timestep: torch.LongTensor | None = None,
        cross_attention_kwargs: dict | None = None,
        class_labels: torch.LongTensor | None = None,
        added_cond_kwargs: dict | None = None,
    ) -> torch.Tensor:
        inputs = self._mpi_state.current
        if inputs is None:
            return super().forward(
                hidden_states,
                attention_mask=attention_mask,
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
                timestep=timestep,
                cross_attention_kwargs=cross_attention_kwargs,
                class_labels=class_labels,
                added_cond_kwargs=added_cond_kwargs,
            )
        # the same operations as BasicTransformerBlock's layer-norm path, with MPI attention inserted
        hidden_states = self.attn1(self.norm1(hidden_states), attention_mask=attention_mask) + hidden_states
        hidden_states = self._mpi_attention(hidden_states, inputs)
        if self.attn2 is not None:
            hidden_states = (
                self.attn2(
                    self.norm2(hidden_states),
                    encoder_hidden_states=inputs.frame_context(encoder_hidden_states),
                    attention_mask=encoder_attention_mask,
                )
                + hidden_states
            )
        norm_hidden_states = self.norm3(hidden_states)
        if self._chunk_size is not None:
            ff_output = _chunked_feed_forward(self.ff, norm_hidden_states, self._chunk_dim, self._chunk_size)
        else:
            ff_output = self.ff(norm_hidden_states)
        return ff_output + hidden_states
