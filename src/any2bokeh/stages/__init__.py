"""LightningModules of the three training stages (§3.4)."""

from any2bokeh.stages.base import BokehModule, StepOutput
from any2bokeh.stages.losses import gradient_texture_loss, image_gradients
from any2bokeh.stages.stage1 import Stage1GeometryGuided
from any2bokeh.stages.stage2 import Stage2TemporalRefinement
from any2bokeh.stages.stage3 import Stage3DecoderDetail

__all__ = [
    "BokehModule",
    "StepOutput",
    "Stage1GeometryGuided",
    "Stage2TemporalRefinement",
    "Stage3DecoderDetail",
    "gradient_texture_loss",
    "image_gradients",
]
