"""The videos of one `predict.py` run and the settings of each.

`input=` names a video file, a folder of frames, a folder of videos (or of frame folders), a glob, a
list of these, or a manifest: a `.csv` with a header or a `.jsonl` of objects, one video per row. A
manifest's `input` column names the video (relative paths start at the manifest's folder); its other
columns override the run's settings for that row: `name`, `disparity`, `depth_model`, `k`,
`focus.value`, `focus.point`, `focus.frame`, `focus.mask`, `focus.object_id`, `focus.text`, `focus.box`,
`focus.keyframes`, `focus.transition` (in a .jsonl, `focus` may also be a nested object). CSV cells holding JSON
(`[0.3, 0.6]`, `[{"frame": 0, "k": 4}]`, numbers) are parsed as JSON.

The authors' demo CSVs (`aif_folder,disp_folder,k`, with `k` a number or `change`) are read as they are:
`aif_folder` is the input, `disp_folder` its disparity, and `change` takes K from the disparity file
names (`frame_names`). A relative path is looked up beside the manifest, then in the working directory
(where the authors' CSVs expect to be run from).
"""

from __future__ import annotations

import copy
import csv
import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from any2bokeh.inference.focus import FOCUS_KEYS as CURVE_KEYS
from any2bokeh.inference.focus import FOCUS_KINDS as CURVE_KINDS
from any2bokeh.io import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, is_visible, list_frames

MANIFEST_SUFFIXES = {".csv", ".jsonl"}
# focus keys that choose how d_f is made (the kinds of `focus_curve`, and keyframes): a row that sets one
# replaces the run's choice
FOCUS_KINDS = (*CURVE_KINDS, "keyframes")
# the keys that go with each focus kind
FOCUS_COMPANIONS = {
    **{kind: tuple(sorted(CURVE_KEYS[kind] - {kind})) for kind in CURVE_KINDS},
    "keyframes": ("transition",),
}
FOCUS_KEYS = (*FOCUS_KINDS, *sorted({key for keys in FOCUS_COMPANIONS.values() for key in keys}))
SETTING_KEYS = ("disparity", "depth_model", "k")
MANIFEST_KEYS = {"input", "name", *SETTING_KEYS, *(f"focus.{key}" for key in FOCUS_KEYS)}
# the authors' demo CSV columns -> ours
RELEASE_COLUMNS = {"aif_folder": "input", "disp_folder": "disparity"}
# the sibling disparity file picked up when `disparity` is not given
SIBLING_SUFFIXES = (".disparity.npy", ".disparity.npz")


@dataclass
class VideoJob:
    """One video to render.

    name: the output stem (<name>.mp4, <name>.json); input: the video file or frame folder;
    settings: disparity, depth_model, k and focus (a dict of FOCUS_KEYS) for this video;
    origin: where the job came from (the input, or manifest:row) for messages.
    """

    name: str
    input: str
    settings: dict[str, Any] = field(default_factory=dict)
    origin: str = ""


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and bool(list_frames(path))


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def expand_path(path: Path) -> list[Path]:
    """The videos one path stands for: a video or image file, a frame folder, or a folder of those."""
    if path.is_file():
        if path.suffix.lower() in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS:
            return [path]
        raise ValueError(f"input {os.fspath(path)!r}: not a video, image or manifest file (suffix {path.suffix!r})")
    if not path.is_dir():
        raise FileNotFoundError(f"input {os.fspath(path)!r} does not exist")
    entries = sorted(p for p in path.iterdir() if is_visible(p))
    found = [p for p in entries if _is_video(p)] + [p for p in entries if _is_frame_folder(p)]
    if found:
        return found
    if _is_frame_folder(path):
        return [path]
    raise ValueError(f"input folder {os.fspath(path)!r} holds no videos, frame folders or images")


def _parse_cell(value: Any) -> Any:
    """A CSV cell: empty -> None, JSON where it parses (numbers, lists, objects), else the text."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text == "":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _flatten(row: dict[str, Any]) -> dict[str, Any]:
    flat = {}
    for key, value in row.items():
        if key == "focus" and isinstance(value, dict):
            flat.update({f"focus.{inner}": inner_value for inner, inner_value in value.items()})
        else:
            flat[key] = value
    return flat


def read_manifest(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Rows of a .csv or .jsonl manifest as (origin, {column: value}); unknown columns are errors."""
    rows: list[tuple[str, dict[str, Any]]] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            for number, row in enumerate(reader, start=2):
                rows.append(
                    (f"{path}:{number}", {key.strip(): _parse_cell(value) for key, value in row.items() if key})
                )
    else:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"manifest {path}:{number} is not a JSON object: {error}") from error
            if not isinstance(row, dict):
                raise ValueError(f"manifest {path}:{number} is not a JSON object: {line[:80]!r}")
            rows.append((f"{path}:{number}", _flatten(row)))
    for origin, row in rows:
        for theirs, ours in RELEASE_COLUMNS.items():
            if theirs in row:
                row[ours] = row.pop(theirs)
        if row.get("k") == "change":
            row["k"] = "names"
        unknown = sorted(set(row) - MANIFEST_KEYS)
        if unknown:
            known = sorted(MANIFEST_KEYS | set(RELEASE_COLUMNS))
            raise ValueError(f"manifest {origin}: unknown column(s) {unknown}; known: {known}")
        if not row.get("input"):
            raise ValueError(f"manifest {origin}: the 'input' column is empty")
    if not rows:
        raise ValueError(f"manifest {path} has no rows")
    return rows


def merge_settings(base: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """The run's settings with a manifest row's columns on top (a row's focus kind replaces the run's)."""
    settings = copy.deepcopy(base)
    focus = settings.setdefault("focus", {})
    row_focus = {
        key.split(".", 1)[1]: value for key, value in row.items() if key.startswith("focus.") and value is not None
    }
    if any(key in row_focus for key in FOCUS_KINDS):
        for key in FOCUS_KINDS:
            focus[key] = None
    focus.update(row_focus)
    for key in SETTING_KEYS:
        if row.get(key) is not None:
            settings[key] = row[key]
    return settings


def _beside(manifest: Path, value: str) -> Path:
    """A manifest's relative path: beside the manifest if it is there, else from the working directory."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    beside = manifest.parent / path
    return beside if beside.exists() or not path.exists() else path


def video_name(path: Path) -> str:
    """The output stem of a video: the file's stem, or the frame folder's name."""
    return path.name if path.is_dir() else path.stem


def list_jobs(inputs: str | os.PathLike | list | tuple, settings: dict[str, Any]) -> list[VideoJob]:
    """The jobs of `input=` with the run's `settings` (disparity, depth_model, k, focus); see the module docstring."""
    items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    jobs: list[VideoJob] = []
    for item in items:
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            for origin, row in read_manifest(path):
                video = _beside(path, str(row["input"]))
                row_settings = merge_settings(settings, row)
                for key in ("disparity", "depth_model", "focus.mask"):
                    value = row.get(key)
                    if isinstance(value, str) and not Path(value).expanduser().is_absolute():
                        resolved = os.fspath(_beside(path, value))
                        if key == "focus.mask":
                            row_settings["focus"]["mask"] = resolved
                        else:
                            row_settings[key] = resolved
                name = str(row.get("name") or video_name(video))
                jobs.append(VideoJob(name=name, input=os.fspath(video), settings=row_settings, origin=origin))
            continue
        if glob.has_magic(text):
            matches = sorted(glob.glob(os.path.expanduser(text)))
            if not matches:
                raise FileNotFoundError(f"input {text!r} matches no files")
            paths = [p for match in matches for p in expand_path(Path(match))]
        else:
            paths = expand_path(path)
        for video in paths:
            jobs.append(
                VideoJob(name=video_name(video), input=os.fspath(video), settings=copy.deepcopy(settings), origin=text)
            )
    plain = [job for job in jobs if job.origin in map(os.fspath, items)]
    if settings.get("disparity") is not None and len(plain) > 1:
        raise ValueError(
            f"disparity={settings['disparity']!r} is one disparity for {len(plain)} videos: put "
            "<name>.disparity.npy beside each video, or give each its own in a manifest's 'disparity' column"
        )
    check_jobs(jobs)
    return jobs


def check_jobs(jobs: list[VideoJob]) -> None:
    """Every output name is used once."""
    if not jobs:
        raise ValueError("input= names no videos")
    seen: dict[str, VideoJob] = {}
    for job in jobs:
        if job.name in seen:
            raise ValueError(
                f"two videos would write {job.name}.mp4: {seen[job.name].input} ({seen[job.name].origin}) and "
                f"{job.input} ({job.origin}); give them distinct names (a manifest's 'name' column)"
            )
        seen[job.name] = job


def sibling_disparity(video: str | os.PathLike) -> Path | None:
    """`<name>.disparity.npy` (or .npz) beside a video file or frame folder, if there is one."""
    path = Path(video)
    stem = path.name if path.is_dir() else path.stem
    for suffix in SIBLING_SUFFIXES:
        candidate = path.parent / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def focus_spec(focus: dict[str, Any]) -> dict[str, Any]:
    """The focus setting reduced to what its kind uses (`FOCUS_COMPANIONS`: `frame` goes with a point or a box,
    `object_id` with a mask, `transition` with keyframes); no kind at all means the subject under the centre of frame
    `frame`. Two kinds at once are an error."""
    focus = {key: value for key, value in focus.items() if value is not None}
    kinds = [kind for kind in FOCUS_COMPANIONS if kind in focus]
    if not kinds:
        return {"point": [0.5, 0.5], "frame": focus.get("frame", 0)}
    if len(kinds) > 1:
        raise ValueError(f"focus must set exactly one of {list(FOCUS_KINDS)}, got {kinds}: {focus}")
    keep = {kinds[0], *FOCUS_COMPANIONS[kinds[0]]}
    return {key: value for key, value in focus.items() if key in keep}
