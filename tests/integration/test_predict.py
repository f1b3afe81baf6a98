"""predict.py end to end on videos the tests write: batches, failures, re-runs, manifests, audio, the model."""

import json
import os
import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest
from hydra.errors import ConfigCompositionException

from any2bokeh.io import has_audio, read_video
from any2bokeh.prediction import predict
from tests.helpers.depth_networks import save_tiny_depth_anything
from tests.helpers.predict_runs import (
    ROOT,
    clip_disparity,
    clip_frames,
    predict_config,
    read_sidecar,
    run_statuses,
    write_clip,
)
from tests.helpers.video_files import write_corrupt_mp4, write_mp4


def test_a_batch_writes_good_clips_reports_bad_ones_and_skips_finished_ones(tmp_path):
    clips, out = tmp_path / "clips", tmp_path / "out"
    write_clip(clips, "good_a", seed=1)
    write_clip(clips, "good_b", seed=2)
    write_clip(clips, "short_disparity", disparity_frames=4)
    write_corrupt_mp4(clips / "corrupt.mp4")
    np.save(clips / "corrupt.disparity.npy", clip_disparity())

    # the command line: the exit code says that a video failed
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    result = subprocess.run(
        [
            sys.executable,
            "predict.py",
            f"input={clips}",
            f"output_dir={out}",
            f"hydra.run.dir={tmp_path / 'log'}",
            "cpu_threads=1",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "corrupt.mp4" in log and "short_disparity" in log and "2 done, 0 skipped, 2 failed" in log
    for name in ("good_a", "good_b"):
        assert (out / f"{name}.mp4").is_file() and (out / f"{name}.json").is_file()
    assert not (out / "corrupt.mp4").exists() and not (out / "short_disparity.mp4").exists()
    assert not [p for p in out.iterdir() if ".partial" in p.name]

    # a second run skips the finished clips and reports the bad ones again, with their reasons
    before = (out / "good_a.mp4").stat().st_mtime_ns
    summary = predict(predict_config(out, f"input={clips}"))
    statuses = run_statuses(summary)
    assert statuses["good_a"][0] == statuses["good_b"][0] == "skipped"
    assert statuses["corrupt"][0] == "failed" and "corrupt.mp4" in statuses["corrupt"][1]
    assert statuses["short_disparity"][0] == "failed" and "4 frames" in statuses["short_disparity"][1]
    assert "6" in statuses["short_disparity"][1] and summary.exit_code == 1
    assert (out / "good_a.mp4").stat().st_mtime_ns == before
    # overwrite=true renders them again
    again = predict(predict_config(out, f"input={clips / 'good_a.mp4'}", "overwrite=true"))
    assert run_statuses(again) == {"good_a": ("done", "")} and again.exit_code == 0
    assert (out / "good_a.mp4").stat().st_mtime_ns != before


def test_output_keeps_frame_count_size_fps_and_audio(tmp_path):
    clip = write_clip(tmp_path, "talk", num_frames=7, fps=12, audio=True)
    out = tmp_path / "out"
    summary = predict(predict_config(out, f"input={clip}", "focus.value=0.9", "k=24"))
    assert summary.exit_code == 0
    written = read_video(out / "talk.mp4")
    assert written.frames.shape == (7, 48, 64, 3) and written.fps == pytest.approx(12)
    assert has_audio(out / "talk.mp4")
    sidecar = read_sidecar(out, "talk")
    assert sidecar["disp_focus"] == [pytest.approx(0.9)] * 7 and sidecar["k"] == [24.0] * 7
    assert sidecar["audio"] and sidecar["frames"] == 7 and sidecar["renderer"]["name"] == "classical"
    assert sidecar["versions"]["torch"] == metadata.version("torch")
    assert {"read", "disparity", "focus", "render", "write", "total"} <= set(sidecar["timings"])


def test_manifest_columns_set_focus_and_k_per_video(tmp_path):
    write_clip(tmp_path, "a", num_frames=8)
    write_clip(tmp_path, "b", num_frames=8, seed=3)
    (tmp_path / "list.jsonl").write_text(
        json.dumps({"input": "a.mp4", "focus": {"value": 0.25}, "k": [{"frame": 0, "k": 4}, {"frame": 7, "k": 32}]})
        + "\n"
        + json.dumps(
            {
                "input": "b.mp4",
                "name": "b_far",
                "focus.keyframes": [{"frame": 0, "value": 1.0}, {"frame": 7, "value": 0.0}],
                "focus.transition": 7,
            }
        )
        + "\n"
    )
    out = tmp_path / "out"
    summary = predict(
        predict_config(out, f"input={tmp_path / 'list.jsonl'}", "renderer=identity", "focus.point=[0.3,0.5]")
    )
    assert summary.exit_code == 0, summary.table()
    a, b = read_sidecar(out, "a"), read_sidecar(out, "b_far")
    assert a["disp_focus"] == [pytest.approx(0.25)] * 8
    assert a["k"] == pytest.approx([4 + 4 * t for t in range(8)])
    assert b["k"] == [16.0] * 8  # the run's K
    # a smoothstep from 1 to 0 over the 7 frames between the keyframes
    u = np.arange(8) / 7
    assert b["disp_focus"] == pytest.approx(list(1 - (3 * u**2 - 2 * u**3)), abs=1e-5)


def test_each_bad_setting_fails_its_video_with_the_file_and_reason(tmp_path):
    write_clip(tmp_path, "clip", num_frames=6)
    np.save(tmp_path / "nan.npy", np.where(clip_disparity() > 2, np.nan, 1.0))
    (tmp_path / "no_masks").mkdir()
    rows = [
        {"name": "no_disparity", "input": "clip.mp4", "disparity": "missing.npy"},
        {"name": "nan_disparity", "input": "clip.mp4", "disparity": "nan.npy"},
        {"name": "negative_k", "input": "clip.mp4", "k": -2},
        {"name": "focus_outside", "input": "clip.mp4", "focus.value": 1.5},
        {"name": "point_outside", "input": "clip.mp4", "focus.point": [1.5, 0.5]},
        {"name": "empty_mask", "input": "clip.mp4", "focus.mask": "no_masks"},
        {"name": "fine", "input": "clip.mp4", "focus.value": 0.5},
    ]
    (tmp_path / "list.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    summary = predict(predict_config(out, f"input={tmp_path / 'list.jsonl'}", "renderer=identity"))
    statuses = run_statuses(summary)
    assert statuses.pop("fine") == ("done", "") and summary.exit_code == 1
    assert all(status == "failed" for status, _ in statuses.values())
    assert "missing.npy" in statuses["no_disparity"][1]
    assert "nan.npy" in statuses["nan_disparity"][1] and "frame 0" in statuses["nan_disparity"][1]
    assert "K" in statuses["negative_k"][1] and "-2" in statuses["negative_k"][1]
    assert "1.5" in statuses["focus_outside"][1]
    assert "1.5" in statuses["point_outside"][1]
    assert "no_masks" in statuses["empty_mask"][1]
    assert (out / "fine.mp4").is_file() and not (out / "negative_k.mp4").exists()


def test_the_model_renderer_end_to_end_with_a_saved_tiny_model(tmp_path):
    from any2bokeh.models import AnyToBokeh

    AnyToBokeh.tiny(seed=0).save_pretrained(tmp_path / "tiny")
    write_clip(tmp_path, "long", num_frames=11)  # longer than the window
    write_clip(tmp_path, "short", num_frames=3, seed=4)
    out = tmp_path / "out"
    overrides = [
        "renderer=model",
        f"renderer.path={tmp_path / 'tiny'}",
        "window=4",
        "overlap=2",
        "working_area=1536",
        "cpu_threads=1",
    ]
    summary = predict(
        predict_config(out, f"input=[{tmp_path / 'long.mp4'},{tmp_path / 'short.mp4'}]", "focus.value=0.5", *overrides)
    )
    assert summary.exit_code == 0, summary.table()
    assert read_video(out / "long.mp4").frames.shape == (11, 48, 64, 3)
    assert read_video(out / "short.mp4").frames.shape == (3, 48, 64, 3)
    renderer = read_sidecar(out, "long")["renderer"]
    assert renderer["name"] == "model" and renderer["window"] == 4 and renderer["path"] == str(tmp_path / "tiny")

    # missing weights fail every video with the path, and the run still ends with its summary
    missing = predict(
        predict_config(
            tmp_path / "out2", f"input={tmp_path / 'short.mp4'}", *overrides[:1], "renderer.path=/no/weights"
        )
    )
    (row,) = missing.rows
    assert row["status"] == "failed" and "/no/weights" in row["reason"] and missing.exit_code == 1


def test_unknown_keys_are_errors(tmp_path):
    with pytest.raises(ConfigCompositionException, match="focus.valu"):
        predict_config(tmp_path, "focus.valu=0.3")
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['foo'\]"):
        predict(predict_config(tmp_path, "+foo=1"))
    with pytest.raises(ValueError, match="renderer.path"):
        predict(predict_config(tmp_path, "renderer=model"))


@pytest.mark.slow
def test_two_processes_render_each_video_exactly_once(tmp_path):
    clips, out = tmp_path / "clips", tmp_path / "out"
    for index in range(3):
        write_clip(clips, f"clip{index}", num_frames=4, seed=index)
    summary = predict(
        predict_config(out, f"input={clips}", "hardware=ddp_cpu2", "renderer=identity", "focus.value=0.5")
    )
    assert summary.exit_code == 0, summary.table()
    entries = [json.loads(line) for line in (out / "predict_log.jsonl").read_text().splitlines()]
    assert sorted(entry["name"] for entry in entries) == ["clip0", "clip1", "clip2"]
    assert {entry["rank"] for entry in entries} == {0, 1}
    assert {read_sidecar(out, f"clip{i}")["rank"] for i in range(3)} == {0, 1}


@pytest.mark.slow
def test_no_input_renders_the_demo_clip_and_tracks_its_target(tmp_path):
    summary = predict(predict_config(tmp_path, "cpu_threads=2"))
    assert summary.exit_code == 0, summary.table()
    sidecar = read_sidecar(tmp_path, "demo")
    truth = json.loads((tmp_path / "demo_input" / "demo.focus.json").read_text())["true_disp_focus"]
    assert np.abs(np.array(sidecar["disp_focus"]) - np.array(truth)).max() < 0.05
    assert read_video(tmp_path / "demo.mp4").frames.shape[0] == len(truth)


def test_a_depth_anything_folder_gives_the_disparity_when_no_file_does(tmp_path):
    save_tiny_depth_anything(tmp_path / "depth")
    clip = tmp_path / "clip.mp4"
    write_mp4(clip, clip_frames(4), 10)  # no clip.disparity.npy beside it
    out = tmp_path / "out"
    summary = predict(predict_config(out, f"input={clip}", f"depth_model={tmp_path / 'depth'}", "focus.value=0.5"))
    assert summary.exit_code == 0, summary.table()
    sidecar = read_sidecar(out, "clip")
    assert sidecar["disparity"] == f"depth_model {tmp_path / 'depth'}"
    # the maps were aligned frame to frame (depth_stabilize, on by default): the flicker before and after
    assert set(sidecar["depth_flicker"]) == {"before", "after"} and sidecar["depth_flicker"]["after"] >= 0
    unsteady = predict(
        predict_config(
            tmp_path / "out4",
            f"input={clip}",
            f"depth_model={tmp_path / 'depth'}",
            "focus.value=0.5",
            "depth_stabilize=false",
        )
    )
    assert unsteady.exit_code == 0 and read_sidecar(tmp_path / "out4", "clip")["depth_flicker"] is None
    # no disparity at all, or a depth folder without weights: the video fails, naming what is missing
    missing = predict(predict_config(tmp_path / "out2", f"input={clip}"))
    assert "no disparity for" in missing.rows[0]["reason"] and "clip.disparity.npy" in missing.rows[0]["reason"]
    (tmp_path / "empty").mkdir()
    empty = predict(predict_config(tmp_path / "out3", f"input={clip}", f"depth_model={tmp_path / 'empty'}"))
    assert empty.exit_code == 1 and str(tmp_path / "empty") in empty.rows[0]["reason"]


def test_a_mask_folder_renders_the_subject_as_its_own_layer_unless_matte_is_off(tmp_path):
    from PIL import Image

    clip = write_clip(tmp_path, "masked", num_frames=6)
    masks = tmp_path / "masks"
    masks.mkdir()
    for t in range(6):
        mask = np.zeros((48, 64), np.uint8)
        mask[12:36, 16:32] = 255  # the near block of _disparity, as a binary mask
        Image.fromarray(mask).save(masks / f"{t:05d}.png")
    runs = {}
    for matte in ("true", "false"):
        out = tmp_path / f"out_{matte}"
        summary = predict(predict_config(out, f"input={clip}", f"focus.mask={masks}", f"matte={matte}", "k=48"))
        assert summary.exit_code == 0, summary.table()
        runs[matte] = (read_sidecar(out, "masked"), read_video(out / "masked.mp4").frames.astype(np.float64))
    assert runs["true"][0]["matte"] is True and runs["false"][0]["matte"] is False
    # the same d_f either way (the mask picks it); the renders differ around the subject
    assert runs["true"][0]["disp_focus"] == runs["false"][0]["disp_focus"]
    assert np.abs(runs["true"][1] - runs["false"][1]).max() > 1
