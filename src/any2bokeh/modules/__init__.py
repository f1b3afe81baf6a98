"""LightningModules of the three training stages (§3.4)."""

from any2bokeh.modules.base import BokehModule, StepOutput
from any2bokeh.modules.losses import gradient_texture_loss, image_gradients
from any2bokeh.modules.stage1 import Stage1GeometryGuided
from any2bokeh.modules.stage2 import Stage2TemporalRefinement
from any2bokeh.modules.stage3 import Stage3DecoderDetail

__all__ = [
    "BokehModule",
    "StepOutput",
    "Stage1GeometryGuided",
    "Stage2TemporalRefinement",
    "Stage3DecoderDetail",
    "gradient_texture_loss",
    "image_gradients",
]
