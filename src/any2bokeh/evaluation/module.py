"""The LightningModule that evaluates jobs: `Trainer.predict` spreads them over the devices.

Each process takes every world_size-th job (no DistributedSampler: it pads with duplicates) and,
for each one not yet on disk, loads the video, renders it with the method, scores the render and
writes the video's record. Nothing is returned or gathered in memory: the records on disk are the
results, so one process and several give the same table, and a killed run resumes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader

from any2bokeh.evaluation.records import EvalVideo, Job, RecordCache
from any2bokeh.utils.sampler import ShardSampler

log = logging.getLogger(__name__)


class EvaluationModule(L.LightningModule):
    """Renders and scores one job per predict step.

    Args:
        jobs: every job of the evaluation, in the same order in every process.
        cache: where records are written (and found when resuming).
        build_method: `build_method(device, precision)`, called once per process (after spawning):
            returns the method, `method(video: EvalVideo) -> Tensor [T, 3, H, W] in [0, 1]`.
        build_scorer: `build_scorer(device)`, called once per process: returns
            `scorer(video, render, seconds) -> record dict`.
        load_video: `load_video(job, device) -> EvalVideo`.
        overwrite: redo jobs that already have a record.
    """

    def __init__(
        self,
        jobs: Sequence[Job],
        cache: RecordCache,
        build_method: Callable[..., Callable[[EvalVideo], torch.Tensor]],
        build_scorer: Callable[..., Callable[..., dict]],
        load_video: Callable[..., EvalVideo],
        overwrite: bool = False,
    ):
        super().__init__()
        self.jobs = list(jobs)
        self.cache = cache
        self.build_method = build_method
        self.build_scorer = build_scorer
        self.load_video = load_video
        self.overwrite = overwrite
        self.method = None
        self.scorer = None

    def predict_dataloader(self) -> DataLoader:
        sampler = ShardSampler(len(self.jobs), self.trainer.global_rank, self.trainer.world_size)
        # batch_size=None: one job index per step, uncollated
        return DataLoader(range(len(self.jobs)), sampler=sampler, batch_size=None)

    def on_predict_start(self) -> None:
        self.method = self.build_method(self.device, str(self.trainer.precision))
        self.scorer = self.build_scorer(self.device)

    def predict_step(self, index: int, batch_idx: int) -> str:
        """Evaluate one job; returns its key (the results are the records on disk)."""
        job = self.jobs[int(index)]
        if not self.overwrite and self.cache.has(job):
            return job.key
        try:
            video = self.load_video(job, self.device)
            video = EvalVideo(**{name: _to(value, self.device) for name, value in vars(video).items()})
            self._synchronize()
            start = time.perf_counter()
            # the renderers choose their own precision: no autocast from the trainer's precision
            with torch.autocast(self.device.type, enabled=False):
                render = self.method(video)
            self._synchronize()
            seconds = time.perf_counter() - start
            record = self.scorer(video, render.float().clamp(0, 1), seconds)
        except Exception as error:  # one bad video must not stop the others: report it, go on
            log.error(f"{job.key} failed: {type(error).__name__}: {error}")
            self.cache.write_failure(job, error)
            return job.key
        self.cache.write(job, record)
        return job.key

    def _synchronize(self) -> None:
        # GPU work is asynchronous: time it from a synchronised start to a synchronised end
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _to(value, device):
    return value.to(device) if isinstance(value, torch.Tensor) else value
