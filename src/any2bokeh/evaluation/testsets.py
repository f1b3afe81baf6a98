"""The test sets an evaluation runs on, as a list of jobs and a loader for one job.

- ``synthetic``: the exported test set (`TestSetDataset`, §4.1), under Table 2's disparity
  perturbation modes I-IV (`perturb_disparity`); it has ground truth, so every metric applies.
- ``davis``: real videos in the DAVIS-2017 layout; no ground truth, so only VEPI (Appendix A.4)
  and the time per frame. See `davis.py`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from any2bokeh.data import TestSetDataset
from any2bokeh.data.perturb import MODES, perturb_disparity
from any2bokeh.evaluation.records import EvalVideo, Job


def synthetic_jobs(root: str | Path, modes: list[str], limit: int | None = None) -> list[Job]:
    """Every (mode, video) pair of the exported test set at root, mode by mode."""
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or not modes:
        raise ValueError(f"synthetic.modes must be a non-empty list of {MODES}, got {list(modes)}")
    videos = TestSetDataset(root).videos
    if limit is not None:
        if limit < 1:
            raise ValueError(f"synthetic.limit must be >= 1 or null, got {limit}")
        videos = videos[:limit]
    return [Job("synthetic", mode, video, index) for mode in modes for index, video in enumerate(videos)]


def perturbation_generator(seed: int, index: int, mode: str) -> torch.Generator:
    """The same (seed, video, mode) draws the same perturbation in any process and any run."""
    return torch.Generator().manual_seed(seed * 1_000_003 + index * len(MODES) + MODES.index(mode))


class SyntheticTestSet:
    """Loads jobs of the exported test set; modes II-IV perturb the disparity the method sees."""

    def __init__(self, root: str | Path, seed: int = 0):
        self.dataset = TestSetDataset(root)
        self.seed = seed

    def load(self, job: Job) -> EvalVideo:
        if self.dataset.videos[job.index] != job.video:
            raise ValueError(f"the test set at {self.dataset.root} changed: video {job.index} is not {job.video}")
        sample = self.dataset[job.index]
        disparity = sample["disparity"]
        if job.mode != "I":
            generator = perturbation_generator(self.seed, job.index, job.mode)
            disparity = perturb_disparity(disparity, job.mode, generator, sample["subject_mask"])
        return EvalVideo(
            frames=(sample["aif"] + 1) / 2,
            disparity=disparity,
            disp_focus=sample["disp_focus"],
            k=sample["k"],
            target=(sample["bokeh"] + 1) / 2,
            mask=sample["subject_mask"],
        )
