from any2bokeh.data.assets import (
    AssetError,
    BackgroundSource,
    ForegroundSource,
    ImageBackgrounds,
    ImageMatteForegrounds,
    VideoMatteForegrounds,
)
from any2bokeh.data.perturb import DisparityPerturbation, perturb_disparity
from any2bokeh.data.procedural import ProceduralBackgrounds, ProceduralForegrounds

__all__ = [
    "AssetError",
    "BackgroundSource",
    "DisparityPerturbation",
    "ForegroundSource",
    "ImageBackgrounds",
    "ImageMatteForegrounds",
    "ProceduralBackgrounds",
    "ProceduralForegrounds",
    "VideoMatteForegrounds",
    "perturb_disparity",
]

# Synthetic scenes, the on-the-fly DataModule and the fixed test set.
from any2bokeh.data.scenes import Scene, SceneConfig, sample_scene  # noqa: E402
from any2bokeh.data.dataset import SyntheticBokehDataset, render_batch  # noqa: E402
from any2bokeh.data.datamodule import SyntheticBokehDataModule  # noqa: E402

__all__ += [
    "Scene",
    "SceneConfig",
    "sample_scene",
    "SyntheticBokehDataset",
    "render_batch",
    "SyntheticBokehDataModule",
]
__all__ += ["TestSetDataset", "evaluation_scene_config", "export_testset"]


def __getattr__(name: str):
    # The test set loads on first use, so `python -m any2bokeh.data.testset` runs it fresh.
    if name in ("TestSetDataset", "evaluation_scene_config", "export_testset"):
        from any2bokeh.data import testset

        return getattr(testset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
