"""Loading the video of any evaluation job: the synthetic test set or DAVIS, opened on first use."""

from __future__ import annotations

from pathlib import Path

import torch

from any2bokeh.evaluation.davis import DavisSet
from any2bokeh.evaluation.records import EvalVideo, Job
from any2bokeh.evaluation.testsets import SyntheticTestSet


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
            if self._davis is None:
                self._davis = DavisSet(**self.davis_cfg)
            return self._davis.load(job, device)
        raise ValueError(f"unknown test set {job.testset!r} in job {job.key}")

    def __getstate__(self) -> dict:
        # opened sets stay in their process
        return {**self.__dict__, "_synthetic": None, "_davis": None}
