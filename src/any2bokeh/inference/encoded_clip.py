"""The per-frame inputs of the model, each computed once per frame and shared by every window that holds it.

A clip rendered in overlapping windows (window 8, overlap 4) puts most frames in two windows, and the UNet
and the decoder both visit each window. `EncodedClip` encodes a frame's all-in-focus latents (with the VAE
encoder's skip features when the decoder uses them), its V_D latents and its CLIP token once, when the first
window that needs it asks (`encode(until)`), and forgets them when no later window needs them
(`release(before)`), so only a bounded run of frames is held: their skip features are the large part, at up
to full resolution.
"""

from __future__ import annotations

import torch
from torch import Tensor

from any2bokeh.models.conditioning import vd_image


class EncodedClip:
    """Lazily encoded frames of one clip (batch 1) at the working size.

    Args:
        model: the AnyToBokeh.
        aif: [1, T, 3, h, w] in [-1, 1], the model's dtype; disparity [1, T, 1, h, w]; disp_focus [1, T].
        keep_skips: keep the encoder's skip features for the decoder (stage 3's skip convs are live).
    """

    def __init__(self, model, aif: Tensor, disparity: Tensor, disp_focus: Tensor, keep_skips: bool) -> None:
        self.model, self.aif, self.disparity, self.disp_focus = model, aif, disparity, disp_focus
        self.keep_skips = keep_skips
        self.encoded = 0  # frames [0, encoded) were encoded (some since released)
        self.latents: dict[int, Tensor] = {}
        self.vd_latents: dict[int, Tensor] = {}
        self.context: dict[int, Tensor] = {}
        self.skips: dict[int, list[Tensor]] = {}
        self.peak_held = 0

    def encode(self, until: int) -> None:
        """Encode the frames [encoded, until) in one batch."""
        if until <= self.encoded:
            return
        part = slice(self.encoded, until)
        model, aif = self.model, self.aif[:, part]
        encoded = model.encode_with_skips(aif, keep_skips=self.keep_skips)
        vd = model.encode(vd_image(self.disparity[:, part], self.disp_focus[:, part]).to(aif.dtype))
        context = model.image_context(aif)  # [1, n, C], or zeros [1, 1, C] without CLIP
        for index, frame in enumerate(range(self.encoded, until)):
            self.latents[frame] = encoded.latents[:, index]
            self.vd_latents[frame] = vd[:, index]
            self.context[frame] = context[:, min(index, context.shape[1] - 1)]
            if self.keep_skips:
                # skips: per encoder level [n, C_i, H_i, W_i] (batch 1: frames on dim 0)
                self.skips[frame] = [level[index : index + 1] for level in encoded.skips]
        self.encoded = until
        self.peak_held = max(self.peak_held, len(self.latents))

    def release(self, before: int) -> None:
        """Forget every frame before `before` (no later window holds it)."""
        for store in (self.latents, self.vd_latents, self.context, self.skips):
            for frame in [frame for frame in store if frame < before]:
                del store[frame]

    def unet_inputs(self, start: int, stop: int, k: Tensor) -> dict:
        """`model.unet_inputs` of the window [start, stop) from the held encodings; k [1, T] of the clip."""
        frames = range(start, stop)
        context = torch.stack([self.context[frame] for frame in frames], dim=1)
        if self.model.image_encoder is None:
            context = context[:, :1]  # the shared zero context
        return self.model.unet_inputs(
            self.aif[:, start:stop],
            self.disparity[:, start:stop],
            self.disp_focus[:, start:stop],
            k[:, start:stop],
            aif_latents=torch.stack([self.latents[frame] for frame in frames], dim=1),
            vd_latents=torch.stack([self.vd_latents[frame] for frame in frames], dim=1),
            context=context,
        )

    def window_skips(self, start: int, stop: int) -> list[Tensor] | None:
        """The decoder's skip features of the window [start, stop), per level [n, C_i, H_i, W_i]."""
        if not self.keep_skips:
            return None
        levels = len(self.skips[start])
        return [torch.cat([self.skips[frame][level] for frame in range(start, stop)]) for level in range(levels)]
