"""The context the temporal transformer blocks cross-attend to: every frame's token, or frame 0's.

With one CLIP token per frame, diffusers hands each temporal block the T tokens of its clip as one
sequence (`BokehUNet`'s per-frame context). Stock SVD has a single image token, and the authors' release,
given one token per frame, still showed its temporal blocks frame 0's alone. `FirstFrameContextBlock`
reproduces that: while the current call's `MPIInputs.first_frame_context` is set, the block attends to
the first token of its context only. Outside such a call it is exactly diffusers' block.
"""

from __future__ import annotations

import torch
from diffusers.models.attention import TemporalBasicTransformerBlock

from .mpi_attention import MPIState, swap_class


class FirstFrameContextBlock(TemporalBasicTransformerBlock):
    """diffusers' TemporalBasicTransformerBlock whose cross-attention can be limited to frame 0's token.

    Made in place by `FirstFrameContextBlock.adopt(block, state)`: parameters keep their names and values.
    """

    _mpi_state: MPIState

    @classmethod
    def adopt(cls, block: TemporalBasicTransformerBlock, state: MPIState) -> "FirstFrameContextBlock":
        if type(block) is not TemporalBasicTransformerBlock:
            raise ValueError(f"FirstFrameContextBlock.adopt: expected a TemporalBasicTransformerBlock, got {block!r}")
        return swap_class(block, cls, _mpi_state=state)

    def forward(
        self, hidden_states: torch.Tensor, num_frames: int, encoder_hidden_states: torch.Tensor | None = None
    ) -> torch.Tensor:
        inputs = self._mpi_state.current
        if inputs is not None and inputs.first_frame_context and encoder_hidden_states is not None:
            # [B * h * w, T, C]: token t is frame t's; keep frame 0's
            encoder_hidden_states = encoder_hidden_states[:, :1]
        return super().forward(hidden_states, num_frames, encoder_hidden_states)


def adopt_temporal_blocks(unet: torch.nn.Module, state: MPIState) -> int:
    """Give every temporal transformer block of `unet` the switchable context; returns how many."""
    blocks = [module for module in unet.modules() if type(module) is TemporalBasicTransformerBlock]
    for block in blocks:
        FirstFrameContextBlock.adopt(block, state)
    return len(blocks)
