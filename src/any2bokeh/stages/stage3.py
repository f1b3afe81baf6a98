"""Stage 3 of §3.4: detail enhancement by fine-tuning the VAE decoder with encoder skips."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from any2bokeh.stages.base import BokehModule, StepOutput, check_batch
from any2bokeh.stages.losses import gradient_texture_loss


class Stage3DecoderDetail(BokehModule):
    """Trains the VAE decoder and its skip convs; the UNet, the VAE encoder and the image encoder are
    frozen. The predicted latents are decoded with the skips of the all-in-focus frames, and the loss
    is L1 + texture_weight * L_t (eq. 5) in pixel space, on clean disparity.

    Args:
        texture_weight: λ in front of the gradient texture loss of eq. (5).
        (others: see `BokehModule`)
    """

    needs_trained_start = True

    def __init__(self, net: nn.Module, optimizer, texture_weight: float = 1.0, **kwargs) -> None:
        if texture_weight < 0:
            raise ValueError(f"texture_weight must be >= 0, got {texture_weight}")
        super().__init__(net, optimizer, **kwargs)
        self.texture_weight = float(texture_weight)

    def trainable_parameters(self) -> Iterable[Tensor]:
        return [parameter for _, parameter in self.net.decoder_parameters()]

    def model_step(self, batch: dict[str, Tensor], decode: bool = True) -> StepOutput:
        """Pixel objective: the prediction is always decoded (`decode` is accepted for the shared calls)."""
        check_batch(batch)
        _, aif, vd_latents = self.encode_frozen(batch, with_target=False, keep_skips=True)
        with torch.no_grad():  # the UNet is frozen
            latents = self.predict_latents(batch, aif.latents, vd_latents)
        prediction = self.net.decode(latents, skips=aif.skips)
        target = batch["bokeh"]
        l1 = F.l1_loss(prediction.float(), target.float())
        texture = gradient_texture_loss(prediction.float(), target.float())
        loss = l1 + self.texture_weight * texture
        return StepOutput(loss=loss, terms={"loss": loss, "l1": l1, "texture": texture}, prediction=prediction)
