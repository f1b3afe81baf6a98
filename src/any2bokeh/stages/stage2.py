"""Stage 2 of §3.4: temporal refinement on longer clips with perturbed disparity."""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor

from any2bokeh.stages.base import BokehModule


class Stage2TemporalRefinement(BokehModule):
    """Trains only the UNet's temporal modules (`BokehUNet.temporal_parameters()`: the temporal
    transformer blocks, temporal res blocks, their time mixers and positional embeddings). The spatial
    layers, the MPI attention blocks, the convs, the VAE and the image encoder are frozen and kept in
    eval mode. The disparity perturbation (p = 0.5) is applied by the DataModule's train split; the
    loss is stage 1's.
    """

    needs_trained_start = True

    def trainable_parameters(self) -> Iterable[Tensor]:
        return [parameter for _, parameter in self.net.unet.temporal_parameters()]
