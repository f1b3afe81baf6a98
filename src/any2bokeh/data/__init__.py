from any2bokeh.data.assets import (
    AssetError,
    BackgroundSource,
    ForegroundSource,
    ImageBackgrounds,
    ImageMatteForegrounds,
    VideoMatteForegrounds,
)

__all__ = [
    "AssetError",
    "BackgroundSource",
    "ForegroundSource",
    "ImageBackgrounds",
    "ImageMatteForegrounds",
    "VideoMatteForegrounds",
]
