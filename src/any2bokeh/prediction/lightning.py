"""The Lightning side of `predict.py`: videos as a dataset, one shard per process, one render per step.

`Trainer.predict` spreads the videos over its processes (one per GPU): process r of n renders videos
r, r + n, r + 2n, ... Lightning's `DistributedSampler` would pad the last shard with repeated videos,
so two processes would write the same file; `ShardSampler` never pads, and the trainer runs with
`use_distributed_sampler=False`. The `VideoWriter` callback writes each result as soon as it is
rendered, from the process that rendered it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from any2bokeh.prediction.jobs import VideoJob
from any2bokeh.prediction.video import FailedVideo, RenderedVideo, render_job
from any2bokeh.utils.sampler import ShardSampler

log = logging.getLogger(__name__)


class VideoJobs(Dataset):
    """The jobs of a run; item i is `jobs[i]` itself (rendering happens in the step)."""

    def __init__(self, jobs: list[VideoJob]) -> None:
        self.jobs = list(jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> VideoJob:
        return self.jobs[index]


def _single(items: list[VideoJob]) -> VideoJob:
    """Collate one job per batch: the job itself."""
    return items[0]


class VideoJobsDataModule(L.LightningDataModule):
    """Serves this process's share of the jobs (`ShardSampler` over the trainer's ranks)."""

    def __init__(self, jobs: list[VideoJob]) -> None:
        super().__init__()
        self.jobs = list(jobs)

    def setup(self, stage: str) -> None:
        # processes launched one by one (torchrun, SLURM) each listed the videos still to do; rank 0's list
        # is the one, so a video another rank finished meanwhile is not dropped from one shard only
        self.jobs = self.trainer.strategy.broadcast(self.jobs, src=0)

    def predict_dataloader(self) -> DataLoader:
        sampler = ShardSampler(len(self.jobs), self.trainer.global_rank, self.trainer.world_size)
        return DataLoader(VideoJobs(self.jobs), batch_size=1, sampler=sampler, collate_fn=_single, num_workers=0)


class RefocusModule(L.LightningModule):
    """Renders one video per `predict_step` with the renderer of `renderer_cfg`.

    The renderer is built in each process on its own device (a model's weights are never pickled to
    the other processes), in bf16/fp16 on a GPU when the trainer's precision asks for it. If it cannot
    be built (e.g. missing weights), every video of this process fails with that reason and the batch
    still ends with a summary.
    """

    def __init__(self, renderer_cfg: DictConfig, precision: str | None = None, progress: bool = True) -> None:
        super().__init__()
        self.renderer_cfg = renderer_cfg
        self.precision = precision
        self.progress = progress
        self._renderer = None
        self._renderer_error: str | None = None

    def renderer(self):
        if self._renderer is None and self._renderer_error is None:
            try:
                renderer = hydra.utils.instantiate(self.renderer_cfg)
                self._renderer = renderer.to(self.device, self.precision)
            except Exception as error:  # reported per video, see the class docstring
                cause = error.__cause__ or error
                self._renderer_error = f"cannot build the renderer: {type(cause).__name__}: {cause}"
                log.error(self._renderer_error)
        if self._renderer_error is not None:
            raise RuntimeError(self._renderer_error)
        return self._renderer

    def predict_step(self, job: VideoJob, batch_idx: int) -> RenderedVideo | FailedVideo:
        start = time.perf_counter()
        # the renderers choose their own precision; Lightning's autocast would turn the FFTs and blending to 16 bits
        with torch.autocast(self.device.type, enabled=False):
            try:
                return render_job(job, self.renderer(), progress=self.progress and self.global_rank == 0)
            except Exception as error:  # one video's failure never stops the batch
                if isinstance(error, torch.OutOfMemoryError) and torch.cuda.is_available():
                    torch.cuda.empty_cache()
                return FailedVideo(
                    job=job, reason=f"{type(error).__name__}: {error}", seconds=time.perf_counter() - start
                )

    def configure_optimizers(self) -> Any:
        return None
