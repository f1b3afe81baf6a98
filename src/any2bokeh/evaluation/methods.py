"""Methods under evaluation: the renderers of `predict.py` (`any2bokeh.inference.renderers`).

`renderer=identity` returns the all-in-focus input (the floor every method must beat),
`renderer=classical` is the weightless thin-lens renderer of a disparity map, and `renderer=model`
loads a checkpoint or a `save_pretrained` folder and renders through the same inference path as
`predict.py` (working size, weighted overlap inference, native detail).
"""

from __future__ import annotations

import hydra
import torch
from omegaconf import DictConfig
from torch import Tensor

from any2bokeh.evaluation.records import EvalVideo
from any2bokeh.inference.resolution import PAPER_WIDTH


class Method:
    """A renderer as an evaluation method: `method(video) -> render [T, 3, H, W] in [0, 1]`.

    The test sets give K in pixels at the video's own width (the exported set's K was rendered
    so); the renderers take the paper's unit, pixels at 1024 px width, so K is rescaled here.
    """

    def __init__(self, renderer):
        self.renderer = renderer
        self.name = getattr(renderer, "name", type(renderer).__name__)

    def __call__(self, video: EvalVideo) -> Tensor:
        width = video.frames.shape[-1]
        k = video.k * (PAPER_WIDTH / width)
        matte = video.mask if video.matte and video.mask is not None else None
        return self.renderer(video.frames, video.disparity, video.disp_focus, k, matte=matte)


class MethodBuilder:
    """Builds the method in each process, on its device (picklable for spawned processes)."""

    def __init__(self, renderer_cfg: DictConfig):
        self.renderer_cfg = renderer_cfg

    def __call__(self, device: torch.device, precision: str | None = None) -> Method:
        # the model renderer's weights follow the precision (bf16/fp16 on a GPU)
        return Method(hydra.utils.instantiate(self.renderer_cfg).to(device, precision))
