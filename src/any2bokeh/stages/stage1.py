"""Stage 1 of §3.4: geometry-guided training on clean disparity."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor

from any2bokeh.stages.base import BokehModule


class Stage1GeometryGuided(BokehModule):
    """Trains the whole UNet: the pretrained spatial and temporal layers, the MPI attention blocks and
    the new convs. The VAE and the image encoder stay frozen. Loss: MSE between the predicted latents
    and the VAE latents of the ground-truth bokeh. Starts from SVD (or the tiny model).
    """

    def trainable_parameters(self) -> Iterable[Tensor]:
        return self.net.unet.parameters()
