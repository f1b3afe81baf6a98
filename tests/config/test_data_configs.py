from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from any2bokeh.data import AssetError, SceneConfig, SyntheticBokehDataModule
from any2bokeh.data.dataset import BATCH_KEYS, ConcatSource
from tests.helpers.video_files import write_matting_tree

CONF = Path(__file__).resolve().parents[2] / "conf"


def compose_data(name: str, *overrides: str):
    """The data group as train.yaml composes it (package `data`), with paths.data_dir set."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(overrides=[f"+data={name}", *overrides])


def test_procedural_composes_instantiates_and_renders(tmp_path):
    cfg = compose_data("procedural", "data.height=32", "data.width=48", "data.num_frames=2")
    assert cfg.data.foregrounds.size == 32 and list(cfg.data.backgrounds.size) == [32, 48]
    dm = instantiate(cfg.data)
    assert isinstance(dm, SyntheticBokehDataModule) and isinstance(dm.scene, SceneConfig)
    assert dm.scene.k_values == (12.0, 16.0, 20.0, 24.0, 28.0) and dm.perturbation is None
    dm.setup("fit")
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert tuple(batch) == BATCH_KEYS
    assert batch["bokeh"].shape == (1, 2, 3, 32, 48)


def test_matting_composes_and_instantiates_on_a_data_folder(tmp_path):
    write_matting_tree(tmp_path)
    cfg = compose_data(
        "matting",
        f"+paths.data_dir={tmp_path}",
        "data.num_workers=0",
        "data.num_frames=2",
        "data.height=32",
        "data.width=32",
    )
    assert cfg.data.backgrounds.root == f"{tmp_path}/BG-20k/train"
    dm = instantiate(cfg.data)
    assert isinstance(dm.foregrounds, ConcatSource) and len(dm.foregrounds) == 1 + 2
    assert len(dm.backgrounds) == 2
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)
    assert batch["aif"].shape == (1, 2, 3, 32, 32)


@pytest.mark.parametrize("missing", ["VideoMatte240K", "AM-2k/train/mask", "BG-20k"])
def test_matting_names_a_missing_folder(tmp_path, missing):
    write_matting_tree(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / missing)
    cfg = compose_data("matting", f"+paths.data_dir={tmp_path}")
    with pytest.raises(Exception) as error:
        instantiate(cfg.data)
    # Hydra wraps the AssetError; the message still names the folder.
    chain, e = [], error.value
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    assert any(isinstance(e, AssetError) for e in chain)
    assert missing.split("/")[0] in str(error.value)


def test_a_bad_k_in_the_config_is_refused():
    cfg = compose_data("procedural", "data.scene.k_values=[8,-2]")
    with pytest.raises(Exception, match="K must be >= 0"):
        instantiate(cfg.data)
    cfg = compose_data("procedural", "data.scene.focus_value=[0.0,0.5]")
    with pytest.raises(Exception, match=r"focus_value: .* \(0, 1\]"):
        instantiate(cfg.data)
