"""predict.py's subject: found once (mask folder, weightless tracker, SAM), it gives d_f, the matte and the saved masks."""

import numpy as np
import pytest
from PIL import Image

from any2bokeh.inference.focus import load_masks
from any2bokeh.prediction import predict
from tests.helpers.predict_runs import clip_disparity, predict_config, read_sidecar, run_statuses, write_clip

# the near block of clip_disparity on the 48 x 64 clip
BLOCK = (slice(12, 36), slice(16, 32))


def test_a_tracked_points_region_is_saved_as_pngs_focus_mask_reads_back_and_is_the_matte_on_request(tmp_path):
    clip = write_clip(tmp_path, "clip")
    out = tmp_path / "out"
    point = "focus.point=[0.375,0.5]"  # the middle of the near block
    summary = predict(predict_config(out, f"input={clip}", point, "save_masks=true", "k=48"))
    assert summary.exit_code == 0, summary.table()
    record = read_sidecar(out, "clip")
    # the tracker's region is the matte only when asked for (tracker_matte)
    assert record["subject"] == "tracker" and record["matte"] is False
    matted = tmp_path / "matted"
    summary = predict(predict_config(matted, f"input={clip}", point, "tracker_matte=true", "k=48"))
    assert summary.exit_code == 0, summary.table()
    assert read_sidecar(matted, "clip")["matte"] is True
    assert read_sidecar(matted, "clip")["disp_focus"] == record["disp_focus"]
    assert record["disp_focus"] == [pytest.approx(1.0, abs=1e-3)] * 6
    folder = out / "clip_masks"
    assert record["masks"] == str(folder) and len(list(folder.glob("*.png"))) == 6
    with Image.open(folder / "00000.png") as first:
        assert first.mode == "L" and first.size == (64, 48)
    masks = load_masks(folder, 6, (48, 64))
    block = np.zeros((48, 64), bool)
    block[BLOCK] = True
    # the tracker's region is the near block, within a pixel of its outline
    assert float((masks.numpy() > 0.5)[:, block].mean()) > 0.95
    assert float((masks.numpy() > 0.5)[:, ~block].mean()) < 0.03
    # the saved masks focus a second run on the same subject, with the same d_f
    again = tmp_path / "again"
    summary = predict(predict_config(again, f"input={clip}", f"focus.mask={folder}", "k=48"))
    assert summary.exit_code == 0, summary.table()
    assert read_sidecar(again, "clip")["subject"] == "mask folder"
    assert read_sidecar(again, "clip")["disp_focus"] == pytest.approx(record["disp_focus"], abs=1e-3)


def test_a_value_focus_has_no_subject_and_no_masks(tmp_path):
    clip = write_clip(tmp_path, "clip")
    summary = predict(predict_config(tmp_path / "out", f"input={clip}", "focus.value=0.5", "save_masks=true"))
    assert summary.exit_code == 0, summary.table()
    record = read_sidecar(tmp_path / "out", "clip")
    assert record["subject"] is None and record["matte"] is False and record["masks"] is None
    assert not (tmp_path / "out" / "clip_masks").exists()


def test_text_or_box_without_a_segmenter_and_two_focus_kinds_fail_with_what_to_do(tmp_path):
    write_clip(tmp_path, "clip")
    rows = [
        '{"name": "text", "input": "clip.mp4", "focus.text": "the block"}',
        '{"name": "box", "input": "clip.mp4", "focus.box": [0.2, 0.2, 0.5, 0.8]}',
        '{"name": "fine", "input": "clip.mp4", "focus.value": 0.5}',
    ]
    (tmp_path / "list.jsonl").write_text("\n".join(rows) + "\n")
    summary = predict(predict_config(tmp_path / "out", f"input={tmp_path / 'list.jsonl'}", "renderer=identity"))
    statuses = run_statuses(summary)
    assert statuses["fine"] == ("done", "")
    for name in ("text", "box"):
        status, reason = statuses[name]
        assert status == "failed" and f"focus.{name}" in reason and "segmenter=" in reason and "facebook/sam" in reason
    mixed = predict(
        predict_config(tmp_path / "mixed", f"input={tmp_path / 'clip.mp4'}", "focus.value=0.5", "focus.text=x")
    )
    status, reason = run_statuses(mixed)["clip"]
    assert status == "failed" and "exactly one" in reason


def test_the_mask_folder_is_read_once_for_focus_and_matte(tmp_path, monkeypatch):
    import any2bokeh.inference.focus as focus

    clip = write_clip(tmp_path, "clip")
    masks = tmp_path / "masks"
    masks.mkdir()
    for t in range(6):
        Image.fromarray(((clip_disparity()[t] > 2) * 255).astype(np.uint8)).save(masks / f"{t:05d}.png")
    calls = []
    real = focus.load_masks
    monkeypatch.setattr(focus, "load_masks", lambda *args, **kwargs: calls.append(args) or real(*args, **kwargs))
    summary = predict(predict_config(tmp_path / "out", f"input={clip}", f"focus.mask={masks}"))
    assert summary.exit_code == 0, summary.table()
    assert len(calls) == 1 and read_sidecar(tmp_path / "out", "clip")["matte"] is True


def test_a_segmenter_tracks_text_or_a_point_loaded_once_per_run_and_saves_its_masks(tmp_path, monkeypatch):
    import any2bokeh.inference.segmentation as segmentation
    from tests.helpers.sam_files import write_tiny_sam2_video, write_tiny_sam3_video

    clips = tmp_path / "clips"
    for name in ("one", "two"):
        write_clip(clips, name, seed=len(name))
    loads = []
    real = segmentation.Segmenter.__init__
    monkeypatch.setattr(
        segmentation.Segmenter, "__init__", lambda self, *a, **k: loads.append(a) or real(self, *a, **k)
    )
    runs = {
        "text": (write_tiny_sam3_video(tmp_path / "sam3"), "focus.text=the block"),
        "point": (write_tiny_sam2_video(tmp_path / "sam2"), "focus.point=[0.375,0.5]"),
    }
    for kind, (folder, focus) in runs.items():
        out = tmp_path / kind
        summary = predict(predict_config(out, f"input={clips}", f"segmenter={folder}", focus, "save_masks=true"))
        assert summary.exit_code == 0, summary.table()
        for name in ("one", "two"):
            record = read_sidecar(out, name)
            assert record["subject"] == "segmenter" and record["matte"] is True
            assert len(record["disp_focus"]) == 6 and all(0 <= value <= 1 for value in record["disp_focus"])
            masks = sorted((out / f"{name}_masks").glob("*.png"))
            assert len(masks) == 6
            with Image.open(masks[0]) as first:
                assert first.size == (64, 48) and set(np.unique(np.asarray(first))) <= {0, 255}
    # each segmenter folder was loaded once for both videos of its run
    assert [str(args[0]) for args in loads] == [str(runs["text"][0]), str(runs["point"][0])]


def test_a_rack_focus_from_a_value_to_a_subject_the_segmenter_finds(tmp_path):
    from tests.helpers.sam_files import write_tiny_sam2_video

    clip = write_clip(tmp_path, "clip")
    sam2 = write_tiny_sam2_video(tmp_path / "sam2")
    keyframes = "focus.keyframes=[{frame:0,value:0.0},{frame:5,box:[0.25,0.25,0.5,0.75]}]"
    summary = predict(
        predict_config(tmp_path / "out", f"input={clip}", f"segmenter={sam2}", keyframes, "focus.transition=5")
    )
    assert summary.exit_code == 0, summary.table()
    record = read_sidecar(tmp_path / "out", "clip")
    # no single subject for a rack focus: no matte; d_f eases from 0 to the boxed subject's mean disparity
    assert record["subject"] is None and record["matte"] is False
    curve = record["disp_focus"]
    assert curve[0] == 0.0 and curve[-1] > 0.05 and curve == sorted(curve)
