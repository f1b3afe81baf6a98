"""Per-video results on disk, so that a killed evaluation resumes where it stopped.

One evaluation (a method, its settings, the metrics' settings and the test sets) owns one folder,
named after a hash of all of them, so a changed setting never reuses stale results:

    <cache_dir>/<method>-<hash>/signature.json           what the hash covers, for people
    <cache_dir>/<method>-<hash>/<testset>/<mode>/<video>.pt           a finished video's record
    <cache_dir>/<method>-<hash>/<testset>/<mode>/<video>.failed.json  why it failed (retried next run)

A record holds the per-video scalars and the features the set-level metrics need (VFID-I and FVD
are Fréchet distances over all videos, so their features are kept, not only a number). Every file
is written under a temporary name and renamed into place, so a kill leaves no half record.
"""

from __future__ import annotations

import hashlib
import json
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from any2bokeh.utils.atomic import atomic_path, write_json


@dataclass(frozen=True)
class Job:
    """One video of one test set under one condition (a Table 2 mode, or "real" for DAVIS)."""

    testset: str
    mode: str
    video: str
    index: int

    @property
    def key(self) -> str:
        return f"{self.testset}/{self.mode}/{self.video}"


@dataclass
class EvalVideo:
    """One video as a method sees it, with what the metrics compare it to.

    frames: [T, 3, H, W] float32 in [0, 1], all in focus.
    disparity: [T, 1, H, W] in [0, 1], 1 nearest, as the method receives it (perturbed for II-IV).
    disp_focus, k: [T]; K in pixels of blur per unit of disparity at this video's own width.
    target: [T, 3, H, W] in [0, 1], the ground-truth bokeh, or None (real videos).
    mask: [T, 1, H, W] in [0, 1], the subject, or None.
    matte: hand the mask to renderers that render a known subject as its own layer (DAVIS, `davis.matte`).
    """

    frames: Tensor
    disparity: Tensor
    disp_focus: Tensor
    k: Tensor
    target: Tensor | None = None
    mask: Tensor | None = None
    matte: bool = False


def signature_hash(signature: dict[str, Any]) -> str:
    """A short stable hash of a JSON-able settings dict."""
    text = json.dumps(signature, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class RecordCache:
    """The folder of one evaluation's per-video records."""

    def __init__(self, root: str | Path, signature: dict[str, Any], name: str = "eval"):
        self.signature = signature
        self.folder = Path(root) / f"{name}-{signature_hash(signature)}"

    def prepare(self) -> None:
        """Create the folder and write signature.json (call once, before the workers start)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / "signature.json", self.signature)

    def _path(self, job: Job, suffix: str) -> Path:
        return self.folder / job.testset / job.mode / f"{job.video}{suffix}"

    def has(self, job: Job) -> bool:
        return self._path(job, ".pt").is_file()

    def write(self, job: Job, record: dict[str, Any]) -> None:
        with atomic_path(self._path(job, ".pt")) as tmp:
            torch.save(record, tmp)
        self._path(job, ".failed.json").unlink(missing_ok=True)

    def write_failure(self, job: Job, error: BaseException) -> None:
        failure = {
            "video": job.key,
            "error": f"{type(error).__name__}: {error}",
            "traceback": "".join(traceback.format_exception(error)),
        }
        write_json(self._path(job, ".failed.json"), failure)
        # a record from an earlier run must not stand in for a video that now fails (overwrite=true)
        self._path(job, ".pt").unlink(missing_ok=True)

    def read(self, job: Job) -> dict[str, Any] | None:
        path = self._path(job, ".pt")
        return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None

    def read_failure(self, job: Job) -> dict[str, Any] | None:
        path = self._path(job, ".failed.json")
        return json.loads(path.read_text()) if path.is_file() else None
