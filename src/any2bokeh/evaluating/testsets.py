"""The test sets an evaluation runs on, as a list of jobs and a loader for one job.

- ``synthetic``: the exported test set (`TestSetDataset`, §4.1), under Table 2's disparity
  perturbation modes I-IV (`perturb_disparity`); it has ground truth, so every metric applies.
- ``davis``: real videos in the DAVIS-2017 layout; no ground truth, so only VEPI (Appendix A.4)
  and the time per frame. See `davis.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from any2bokeh.data import TestSetDataset
from any2bokeh.data.perturb import MODES, perturb_disparity
from any2bokeh.evaluating.records import Job


@dataclass
class EvalVideo:
    """One video as a method sees it, with what the metrics compare it to.

    frames: [T, 3, H, W] float32 in [0, 1], all in focus.
    disparity: [T, 1, H, W] in [0, 1], 1 nearest, as the method receives it (perturbed for II-IV).
    disp_focus, k: [T]; K in pixels of blur per unit of disparity at this video's own width.
    target: [T, 3, H, W] in [0, 1], the ground-truth bokeh, or None (real videos).
    mask: [T, 1, H, W] in [0, 1], the subject, or None.
    """

    frames: Tensor
    disparity: Tensor
    disp_focus: Tensor
    k: Tensor
    target: Tensor | None = None
    mask: Tensor | None = None


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


class VideoLoader:
    """`loader(job) -> EvalVideo` for jobs of either test set; picklable, opens the sets lazily."""

    def __init__(self, synthetic_root: str | Path | None, seed: int, davis_cfg=None):
        self.synthetic_root, self.seed, self.davis_cfg = synthetic_root, seed, davis_cfg
        self._synthetic = self._davis = None

    def __call__(self, job: Job, device: torch.device | str = "cpu") -> EvalVideo:
        """The job's video; `device` is where a depth network runs (DAVIS without disparity files)."""
        if job.testset == "synthetic":
            if self._synthetic is None:
                self._synthetic = SyntheticTestSet(self.synthetic_root, self.seed)
            return self._synthetic.load(job)
        if job.testset == "davis":
            from any2bokeh.evaluating.davis import DavisSet

            if self._davis is None:
                self._davis = DavisSet(**self.davis_cfg)
            return self._davis.load(job, device)
        raise ValueError(f"unknown test set {job.testset!r} in job {job.key}")

    def __getstate__(self) -> dict:
        # opened sets stay in their process
        return {**self.__dict__, "_synthetic": None, "_davis": None}
