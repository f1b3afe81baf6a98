"""Writing what a `predict.py` run renders: `<name>.mp4`, `<name>.json` and the run log.

- `<name>.mp4`: H.264, the input's size, frame count and frame rate, the input's audio copied over.
- `<name>.json` (the sidecar, written last): the settings, the d_f and K curves, the timings, the
  renderer, the device and the versions. Both files are written under temporary names and renamed
  when complete, so a video counts as done exactly when its sidecar exists beside its mp4.
- `predict_log.jsonl`: one line per video per run (done or failed, the reason, the seconds, the
  process). Every process appends whole lines to it; the summary at the end of a run reads it.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import BasePredictionWriter

from any2bokeh.prediction.video import FailedVideo, RenderedVideo
from any2bokeh.utils.atomic import write_json

log = logging.getLogger(__name__)

LOG_NAME = "predict_log.jsonl"
PACKAGES = ("any2bokeh", "torch", "lightning", "diffusers", "transformers", "av", "numpy")


def versions() -> dict[str, str | None]:
    """Versions of Python and the packages a render depends on."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def output_paths(output_dir: str | os.PathLike, name: str) -> tuple[Path, Path]:
    """(<name>.mp4, <name>.json) in output_dir."""
    folder = Path(output_dir)
    return folder / f"{name}.mp4", folder / f"{name}.json"


def is_done(output_dir: str | os.PathLike, name: str) -> bool:
    """A finished video: its sidecar, written after its mp4, exists beside it."""
    video, sidecar = output_paths(output_dir, name)
    return video.is_file() and sidecar.is_file()


def append_log(output_dir: str | os.PathLike, entry: dict[str, Any]) -> None:
    """Append one line to the run log with a single write (whole lines from concurrent processes)."""
    path = Path(output_dir) / LOG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


def read_log(output_dir: str | os.PathLike, run: str) -> list[dict[str, Any]]:
    """The run log's entries of run `run`, in the order they were written."""
    path = Path(output_dir) / LOG_NAME
    if not path.is_file():
        return []
    entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [entry for entry in entries if entry.get("run") == run]


def write_result(
    result: RenderedVideo | FailedVideo,
    output_dir: str | os.PathLike,
    run: str,
    rank: int = 0,
    save_frames: bool = False,
) -> dict[str, Any]:
    """Write a rendered video and its sidecar, or report a failure; returns the run-log entry (also appended)."""
    from any2bokeh.io import has_audio, write_mp4, write_png_frames

    job = result.job
    entry = {"run": run, "name": job.name, "input": job.input, "rank": rank, "time": _now()}
    if isinstance(result, RenderedVideo):
        start = time.perf_counter()
        try:
            video, sidecar = output_paths(output_dir, job.name)
            audio = job.input if has_audio(job.input) else None
            write_mp4(video, result.frames, result.fps, audio_from=audio)
            if save_frames:
                write_png_frames(Path(output_dir) / f"{job.name}_frames", result.frames)
            masks = None
            if result.masks is not None:
                masks = write_png_frames(Path(output_dir) / f"{job.name}_masks", result.masks)
            timings = dict(result.record.get("timings", {}), write=round(time.perf_counter() - start, 4))
            total = sum(timings.values())
            num_frames = result.frames.shape[0]
            record = {
                **result.record,
                "name": job.name,
                "output": str(video),
                "audio": audio is not None,
                "masks": None if masks is None else str(masks),
                "timings": {**timings, "total": round(total, 4), "seconds_per_frame": round(total / num_frames, 4)},
                "run": run,
                "rank": rank,
                "time": entry["time"],
                "versions": versions(),
            }
            write_json(sidecar, record)
            entry.update(status="done", frames=num_frames, seconds=round(total, 3))
        except Exception as error:  # a failed write fails this video only
            entry.update(status="failed", reason=f"writing {job.name}: {type(error).__name__}: {error}")
    else:
        entry.update(status="failed", reason=result.reason, seconds=round(result.seconds, 3))
    if entry["status"] == "failed":
        log.error("%s failed (%s): %s", job.name, job.input, entry["reason"])
    append_log(output_dir, entry)
    return entry


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class VideoWriter(BasePredictionWriter):
    """Writes each video as soon as its process has rendered it (see the module docstring).

    run: the run's id; every process takes rank 0's, so the summary finds all their log lines.
    """

    def __init__(self, output_dir: str | os.PathLike, run: str, save_frames: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output_dir, self.run, self.save_frames = Path(output_dir), run, save_frames

    def setup(self, trainer, pl_module, stage: str) -> None:
        self.run = trainer.strategy.broadcast(self.run, src=0)

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ) -> None:
        write_result(prediction, self.output_dir, self.run, trainer.global_rank, self.save_frames)
