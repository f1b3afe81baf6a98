"""The authors' released weights through predict.py, evaluate.py and train.py (release-layout files the tests write)."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from any2bokeh.io import read_video
from any2bokeh.models import AnyToBokeh, save_tiny_svd
from any2bokeh.models.release import main as convert
from any2bokeh.prediction import compose_predict_config, predict
from any2bokeh.training import train
from tests.helpers.eval_configs import evaluate_config
from tests.helpers.release_files import write_release
from tests.helpers.train_configs import tiny_config
from tests.helpers.video_files import write_frame_folder, write_mp4

ROOT = Path(__file__).resolve().parents[2]
RENDER = ["window=8", "overlap=4", "working_area=3072", "cpu_threads=1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    return write_release(root / "checkpoints"), save_tiny_svd(root / "svd")


def _cfg(output_dir, *overrides):
    return compose_predict_config(
        ROOT / "conf", [f"output_dir={output_dir}", "trainer.enable_progress_bar=false", *overrides], log_dir=output_dir
    )


def _frames(num_frames, height=48, width=64, seed=0):
    rng = np.random.default_rng(seed)
    wide = rng.integers(0, 256, (height, width + num_frames, 3), dtype=np.uint8)
    return np.stack([wide[:, t : t + width] for t in range(num_frames)])


def test_predict_renders_a_13_frame_clip_with_the_release(files, tmp_path):
    write_mp4(tmp_path / "clip.mp4", _frames(13))
    np.save(tmp_path / "clip.disparity.npy", np.random.default_rng(1).random((13, 48, 64)).astype(np.float32))
    release, svd = files
    out = tmp_path / "out"
    overrides = ["renderer=release", f"renderer.path={release}", f"renderer.svd={svd}", "focus.value=0.5", *RENDER]
    summary = predict(_cfg(out, f"input={tmp_path / 'clip.mp4'}", *overrides))
    assert summary.exit_code == 0, summary.table()
    assert read_video(out / "clip.mp4").frames.shape == (13, 48, 64, 3)
    sidecar = json.loads((out / "clip.json").read_text())
    assert sidecar["renderer"]["model"]["options"]["k_encoding"] == "release"

    # without renderer.svd the video fails with the reason, and the run still ends with its summary
    missing = predict(_cfg(tmp_path / "out2", f"input={tmp_path / 'clip.mp4'}", *overrides[:2], "focus.value=0.5"))
    (row,) = missing.rows
    assert row["status"] == "failed" and "renderer.svd=" in row["reason"]


def _demo_layout(root: Path, name: str, num_frames: int, names) -> None:
    """The authors' demo folders: frames `<i>.png`, 8-bit disparity `<i>_zf_<d_f>[_k_<K>].png`."""
    write_frame_folder(root / "demo_dataset" / "videos" / name, _frames(num_frames, seed=2))
    disp = root / "demo_dataset" / "disp" / name
    disp.mkdir(parents=True)
    for i in range(num_frames):
        values = np.full((48, 64), 40, dtype=np.uint8)
        values[12:36, 16:40] = 240  # a near block; the clip spans 40..240 of 255
        Image.fromarray(values).save(disp / f"{i:05d}{names(i)}.png")


def test_the_authors_demo_csv_and_names_run_unchanged(files, tmp_path, monkeypatch):
    release, svd = files
    _demo_layout(tmp_path, "still", 9, lambda i: "_zf_0.5")
    _demo_layout(tmp_path, "ramp", 9, lambda i: f"_zf_{0.2 + 0.05 * i:.5f}_k_{4 + 2 * i}")
    (tmp_path / "csv_file").mkdir()
    for file, rows in (("demo.csv", [("still", "12")]), ("demo_change_k.csv", [("ramp", "change")])):
        with open(tmp_path / "csv_file" / file, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["aif_folder", "disp_folder", "k"])
            for name, k in rows:
                writer.writerow([f"demo_dataset/videos/{name}", f"demo_dataset/disp/{name}", k])
    monkeypatch.chdir(tmp_path)  # their CSVs hold paths from the repository root
    out = tmp_path / "out"
    overrides = ["renderer=release", f"renderer.path={release}", f"renderer.svd={svd}", *RENDER]
    for file in ("demo.csv", "demo_change_k.csv"):
        summary = predict(_cfg(out, f"input=csv_file/{file}", *overrides))
        assert summary.exit_code == 0, summary.table()
    still = json.loads((out / "still.json").read_text())
    ramp = json.loads((out / "ramp.json").read_text())
    # d_f on the clip's normalised scale: (d_f * 255 - 40) / (240 - 40)
    assert still["disp_focus"] == pytest.approx([(0.5 * 255 - 40) / 200] * 9, abs=1e-5) and still["k"] == [12.0] * 9
    assert ramp["disp_focus"] == pytest.approx([((0.2 + 0.05 * i) * 255 - 40) / 200 for i in range(9)], abs=1e-4)
    assert ramp["k"] == [4.0 + 2 * i for i in range(9)]
    assert read_video(out / "ramp.mp4").frames.shape == (9, 48, 64, 3)


def test_evaluate_writes_the_release_row(files, tmp_path):
    from any2bokeh.data.testset import main as export_command
    from any2bokeh.evaluation import evaluate

    release, svd = files
    testset = tmp_path / "set"
    export_command(
        ["export", "--out", str(testset), "--num-videos", "2", "--num-frames", "9", "--height", "48", "--width", "64"]
    )
    overrides = [
        f"synthetic.root={testset}",
        "synthetic.modes=[I]",
        "renderer=release",
        f"renderer.path={release}",
        f"renderer.svd={svd}",
        "working_area=3072",
    ]
    results, _ = evaluate(evaluate_config(tmp_path, *overrides))
    group = results["groups"]["synthetic/I"]
    assert results["failures"] == [] and group["videos_used"] == 2 and math.isfinite(group["metrics"]["psnr"])
    assert "**release** (this run)" in (tmp_path / "run" / "results.md").read_text()


@pytest.fixture(scope="module")
def converted(files, tmp_path_factory):
    root = tmp_path_factory.mktemp("converted")
    assert convert(["--release", str(files[0]), "--svd", str(files[1]), "--out", str(root / "release")]) == 0
    assert (
        convert(["--release", str(files[0]), "--svd", str(files[1]), "--out", str(root / "mpi"), "--cond-tokens"]) == 0
    )
    return root / "release", root / "mpi"


@pytest.mark.parametrize("stage", ["stage2", "stage3"])
def test_stages_2_and_3_fine_tune_the_converted_release(converted, tmp_path, stage):
    metrics, objects = train(tiny_config(tmp_path, f"stage={stage}", f"init_from={converted[0]}"))
    net = objects["model"].net
    release = AnyToBokeh.from_pretrained(converted[0]).options
    assert release.training_size == [576, 1024] and net.options.training_size == [32, 32]  # the size it learnt at
    net.options.training_size = release.training_size
    assert net.options == release  # the release's options kept
    assert objects["trainer"].global_step == 2 and math.isfinite(float(metrics["train/loss"]))


def test_the_mpi_prior_switched_on_trains_its_condition_tokens(converted, tmp_path):
    start = AnyToBokeh.from_pretrained(converted[1])
    assert start.options.cond_tokens and start.unet.cond_embed is not None
    metrics, objects = train(tiny_config(tmp_path, "stage=stage1", f"init_from={converted[1]}"))
    trained = objects["model"].net.unet.cond_embed.weight.detach()
    assert not torch.equal(trained, start.unet.cond_embed.weight) and math.isfinite(float(metrics["train/loss"]))
