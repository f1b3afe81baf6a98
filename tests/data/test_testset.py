import json
import os
import stat
from pathlib import Path

import pytest
import torch

from any2bokeh.data.dataset import BATCH_KEYS, SyntheticBokehDataset
from any2bokeh.data.testset import TestSetDataset, evaluation_scene_config, export_testset, main
from tests.helpers.scene_sources import procedural

TINY = dict(num_videos=2, num_frames=3, height=32, width=32, seed=5)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_testset(tmp_path_factory.mktemp("testset") / "set", **TINY)


def reference(index: int):
    """The same clip rendered in memory, as the export drew it."""
    from any2bokeh.data.testset import _default_sources

    ds = SyntheticBokehDataset(
        *_default_sources(32, 32, 5),
        split="test",
        size=2,
        num_frames=3,
        height=32,
        width=32,
        seed=5,
        scene=evaluation_scene_config(),
    )
    return ds.render_sample(index)


def test_export_layout(exported):
    settings = json.loads((exported / "testset.json").read_text())
    assert settings["videos"] == ["video_0000", "video_0001"] and settings["k_values"] == [4.0, 8.0, 16.0, 32.0]
    for video in settings["videos"]:
        for folder in ("aif", "bokeh", "disparity", "mask"):
            assert sorted(p.name for p in (exported / video / folder).iterdir()) == [
                "00000.png",
                "00001.png",
                "00002.png",
            ]
        meta = json.loads((exported / video / "meta.json").read_text())
        assert len(meta["disp_focus"]) == len(meta["k"]) == 3
        assert set(meta["k"]) <= {4.0, 8.0, 16.0, 32.0}
    assert not [p for p in exported.iterdir() if p.name.startswith(".")]


def test_load_back_matches_the_rendered_clip(exported):
    ds = TestSetDataset(exported)
    assert len(ds) == 2
    for i in range(2):
        loaded, expected = ds[i], reference(i)
        assert tuple(loaded) == BATCH_KEYS
        for name in BATCH_KEYS:
            assert loaded[name].shape == expected[name].shape and loaded[name].dtype == torch.float32, name
        # 8-bit images and masks, 16-bit disparity, exact focus and K.
        for name, step in [("aif", 2 / 255), ("bokeh", 2 / 255), ("subject_mask", 1 / 255), ("disparity", 1 / 65535)]:
            assert (loaded[name] - expected[name]).abs().max() <= step / 2 + 1e-6, name
        assert torch.equal(loaded["disp_focus"], expected["disp_focus"]) and torch.equal(loaded["k"], expected["k"])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["aif"].shape == (2, 3, 3, 32, 32) and batch["k"].shape == (2, 3)


def test_interrupted_export_leaves_complete_videos_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "set"
    calls = []
    real = SyntheticBokehDataset.render_sample

    def failing(self, index, **kw):
        calls.append(index)
        if index == 1:
            raise RuntimeError("power cut")
        return real(self, index, **kw)

    monkeypatch.setattr(SyntheticBokehDataset, "render_sample", failing)
    with pytest.raises(RuntimeError, match="power cut"):
        export_testset(out, **TINY)
    assert sorted(p.name for p in out.iterdir()) == ["video_0000"]  # no index, no partial video
    monkeypatch.setattr(SyntheticBokehDataset, "render_sample", real)
    first = (out / "video_0000" / "meta.json").stat().st_mtime_ns
    (out / ".tmp_video_0001_left").mkdir()  # a crashed writer's leftovers
    export_testset(out, **TINY)
    assert (out / "video_0000" / "meta.json").stat().st_mtime_ns == first  # kept, not rewritten
    assert sorted(p.name for p in out.iterdir()) == ["testset.json", "video_0000", "video_0001"]
    assert len(TestSetDataset(out)) == 2


def test_command_line_export(tmp_path):
    main(
        [
            "export",
            "--out",
            str(tmp_path / "cli"),
            "--num-videos",
            "1",
            "--num-frames",
            "2",
            "--height",
            "16",
            "--width",
            "24",
            "--k-values",
            "4",
            "8",
        ]
    )
    ds = TestSetDataset(tmp_path / "cli")
    sample = ds[0]
    assert sample["aif"].shape == (2, 3, 16, 24) and set(sample["k"].tolist()) <= {4.0, 8.0}
    # The K set given on the command line is what the export records, in the index and in the video's settings.
    assert ds.settings["k_values"] == [4.0, 8.0]
    meta = json.loads((tmp_path / "cli" / "video_0000" / "meta.json").read_text())
    assert meta["settings"]["scene.k_values"] == [4.0, 8.0]


def test_command_line_export_from_a_data_config(tmp_path):
    conf = Path(__file__).resolve().parents[2] / "conf" / "data" / "procedural.yaml"
    args = ["--num-videos", "1", "--num-frames", "2", "--height", "16", "--width", "24"]
    main(["export", "--out", str(tmp_path / "config"), "--data-config", str(conf), *args])
    main(["export", "--out", str(tmp_path / "default"), *args])
    from_config, default = TestSetDataset(tmp_path / "config")[0], TestSetDataset(tmp_path / "default")[0]
    assert from_config["aif"].shape == default["aif"].shape == (2, 3, 16, 24)
    # The config's procedural sources (seed 0) are not the default test sources (seed 1000).
    assert not torch.equal(from_config["aif"], default["aif"])
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        main(["export", "--out", str(tmp_path / "x"), "--data-config", str(tmp_path / "nowhere.yaml"), *args])


def test_missing_test_set_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        TestSetDataset(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="K must be >= 0"):
        evaluation_scene_config(k_values=(-4.0,))


def test_exported_test_set_is_readable_like_any_other_file(tmp_path):
    """The temporary folder and file of the atomic writes must not leave the set private to its writer."""
    previous = os.umask(0o022)
    try:
        fg, bg = procedural(16, 16)
        out = export_testset(
            tmp_path / "set",
            num_videos=1,
            num_frames=2,
            height=16,
            width=16,
            foregrounds=fg,
            backgrounds=bg,
            samples_per_side=5,
        )
    finally:
        os.umask(previous)
    assert stat.S_IMODE((out / "testset.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((out / "video_0000").stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "video_0000" / "meta.json").stat().st_mode) == 0o644
    assert len(TestSetDataset(out)) == 1


def test_resuming_an_export_with_other_settings_is_refused(tmp_path):
    """Videos kept from an earlier export must have been drawn with the same settings."""
    fg, bg = procedural(16, 16)
    options = dict(num_videos=1, height=16, width=16, foregrounds=fg, backgrounds=bg, samples_per_side=5)
    out = export_testset(tmp_path / "set", num_frames=2, **options)
    export_testset(out, num_frames=2, **options)  # same settings: resumes (nothing to do)
    with pytest.raises(ValueError, match="num_frames"):
        export_testset(out, num_frames=3, **options)
    with pytest.raises(ValueError, match="k_values"):
        export_testset(out, num_frames=2, scene={"k_values": (4.0,)}, **options)
    assert TestSetDataset(out)[0]["k"].shape == (2,)
