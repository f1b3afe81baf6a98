from any2bokeh.data.assets import (
    AssetError,
    BackgroundSource,
    ForegroundSource,
    ImageBackgrounds,
    ImageMatteForegrounds,
    VideoMatteForegrounds,
)
from any2bokeh.data.procedural import ProceduralBackgrounds, ProceduralForegrounds

__all__ = [
    "AssetError",
    "BackgroundSource",
    "ForegroundSource",
    "ImageBackgrounds",
    "ImageMatteForegrounds",
    "ProceduralBackgrounds",
    "ProceduralForegrounds",
    "VideoMatteForegrounds",
]

# Synthetic scenes, the on-the-fly DataModule and the fixed test set.
from any2bokeh.data.scenes import Scene, SceneConfig, sample_scene  # noqa: E402
from any2bokeh.data.dataset import SyntheticBokehDataset, render_batch, sample_generator  # noqa: E402
from any2bokeh.data.datamodule import SyntheticBokehDataModule  # noqa: E402

__all__ += [
    "Scene",
    "SceneConfig",
    "sample_scene",
    "SyntheticBokehDataset",
    "render_batch",
    "sample_generator",
    "SyntheticBokehDataModule",
]
