import json

import numpy as np
import pytest

from any2bokeh.prediction.jobs import list_jobs, merge_settings, sibling_disparity

BASE = {"disparity": None, "depth_model": None, "k": 16, "focus": {"value": None, "point": [0.5, 0.5], "frame": 0}}


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_a_folder_lists_its_videos_and_frame_folders(tmp_path):
    _touch(tmp_path / "b.mp4")
    _touch(tmp_path / "a.mov")
    _touch(tmp_path / "a.disparity.npy")
    _touch(tmp_path / "frames" / "00000.png")
    _touch(tmp_path / "notes.txt")
    jobs = list_jobs(tmp_path, BASE)
    assert [job.name for job in jobs] == ["a", "b", "frames"]
    assert jobs[2].input == str(tmp_path / "frames")


def test_a_frame_folder_is_one_video_and_a_glob_matches_files(tmp_path):
    _touch(tmp_path / "clip" / "00000.jpg")
    _touch(tmp_path / "clip" / "00001.jpg")
    assert [job.name for job in list_jobs(tmp_path / "clip", BASE)] == ["clip"]
    _touch(tmp_path / "x1.mp4")
    _touch(tmp_path / "x2.mp4")
    _touch(tmp_path / "y.mp4")
    assert [job.name for job in list_jobs(str(tmp_path / "x*.mp4"), BASE)] == ["x1", "x2"]
    with pytest.raises(FileNotFoundError, match="matches no files"):
        list_jobs(str(tmp_path / "z*.mp4"), BASE)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_jobs(tmp_path / "missing.mp4", BASE)


def test_csv_manifest_columns_override_the_run_settings(tmp_path):
    _touch(tmp_path / "videos" / "a.mp4")
    _touch(tmp_path / "videos" / "b.mp4")
    (tmp_path / "list.csv").write_text(
        "input,focus.value,k,disparity,name\n"
        "videos/a.mp4,0.3,,,\n"
        'videos/b.mp4,,"[{""frame"": 0, ""k"": 4}, {""frame"": 9, ""k"": 32}]",depth/b.npy,bee\n'
    )
    a, b = list_jobs(tmp_path / "list.csv", BASE)
    assert a.name == "a" and a.input == str(tmp_path / "videos" / "a.mp4")
    # a row's focus kind replaces the run's point; the run's K stays where the row is empty
    assert a.settings["focus"]["value"] == 0.3 and a.settings["focus"]["point"] is None and a.settings["k"] == 16
    assert b.name == "bee" and b.settings["k"] == [{"frame": 0, "k": 4}, {"frame": 9, "k": 32}]
    assert b.settings["disparity"] == str(tmp_path / "depth" / "b.npy")
    assert b.settings["focus"]["point"] == [0.5, 0.5]
    assert a.origin.endswith("list.csv:2") and b.origin.endswith("list.csv:3")


def test_jsonl_manifest_takes_nested_focus_and_rejects_unknown_columns(tmp_path):
    _touch(tmp_path / "a.mp4")
    (tmp_path / "list.jsonl").write_text(
        json.dumps({"input": "a.mp4", "focus": {"mask": "masks", "object_id": 2}}) + "\n"
    )
    (job,) = list_jobs(tmp_path / "list.jsonl", BASE)
    assert job.settings["focus"]["mask"] == str(tmp_path / "masks") and job.settings["focus"]["object_id"] == 2
    (tmp_path / "bad.jsonl").write_text(json.dumps({"input": "a.mp4", "focal": 0.3}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: unknown column\(s\) \['focal'\]"):
        list_jobs(tmp_path / "bad.jsonl", BASE)


def test_two_videos_with_one_name_or_one_disparity_are_errors(tmp_path):
    _touch(tmp_path / "one" / "clip.mp4")
    _touch(tmp_path / "two" / "clip.mov")
    with pytest.raises(ValueError, match="two videos would write clip.mp4"):
        list_jobs([tmp_path / "one", tmp_path / "two"], BASE)
    with pytest.raises(ValueError, match="one disparity for 2 videos"):
        list_jobs([tmp_path / "one", tmp_path / "two" / "clip.mov"], {**BASE, "disparity": "d.npy"})


def test_sibling_disparity_is_found_beside_the_video(tmp_path):
    video = _touch(tmp_path / "clip.mp4")
    assert sibling_disparity(video) is None
    np.save(tmp_path / "clip.disparity.npy", np.zeros((1, 2, 2)))
    assert sibling_disparity(video) == tmp_path / "clip.disparity.npy"


def test_merge_keeps_the_run_settings_where_a_row_is_silent():
    merged = merge_settings(BASE, {"input": "x.mp4", "focus.transition": 4})
    assert merged["focus"]["point"] == [0.5, 0.5] and merged["focus"]["transition"] == 4
    assert BASE["focus"].get("transition") is None  # the run's settings are not changed
