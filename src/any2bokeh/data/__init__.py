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
