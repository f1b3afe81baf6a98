"""The data layer: assets, synthetic scenes, the DataModule and the fixed test set.

Names load on first use, so that `any2bokeh.data.disparity` or `any2bokeh.data.seeding` can be
imported without scene synthesis, Lightning or the test-set exporter (and so that
`python -m any2bokeh.data.testset` runs that module fresh).
"""

from __future__ import annotations

import importlib

# Public name -> the module of this package that defines it.
_HOMES = {
    "AssetError": "assets",
    "BackgroundSource": "assets",
    "ForegroundSource": "assets",
    "ImageBackgrounds": "assets",
    "ImageMatteForegrounds": "assets",
    "VideoMatteForegrounds": "assets",
    "DisparityPerturbation": "perturb",
    "perturb_disparity": "perturb",
    "ProceduralBackgrounds": "procedural",
    "ProceduralForegrounds": "procedural",
    "Scene": "scenes",
    "SceneConfig": "scene_config",
    "sample_scene": "scenes",
    "BATCH_KEYS": "dataset",
    "SyntheticBokehDataset": "dataset",
    "render_batch": "dataset",
    "SyntheticBokehDataModule": "datamodule",
    "TestSetDataset": "testset",
    "evaluation_scene_config": "testset",
    "export_testset": "testset",
    "MIN_DISP_FOCUS": "disparity",
    "normalize_disparity": "disparity",
    "subject_focus": "disparity",
    "keyed_generator": "seeding",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
