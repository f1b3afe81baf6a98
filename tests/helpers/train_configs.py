"""Composed training configs for the tests: the tiny model on small procedural clips, 2 steps."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from lightning.pytorch import Callback
from omegaconf import DictConfig

from any2bokeh.training import compose_train_config

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"

# 2 optimiser steps of the tiny model on 2-frame 32x32 clips, validated once at the end on 1 clip
TINY_RUN = [
    "model=svd_tiny",
    "hardware=cpu",
    "cpu_threads=1",
    "logger=csv",
    "data.num_frames=2",
    "data.height=32",
    "data.width=32",
    "data.train_size=4",
    "data.val_size=1",
    "data.test_size=1",
    "data.samples_per_side=11",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
    "callbacks.video_logger.num_videos=1",
    "~callbacks.progress_bar",
    "trainer.enable_progress_bar=false",
]


def tiny_config(output_dir: str | Path, *overrides: str) -> DictConfig:
    """The training config of a tiny run writing to `output_dir`, with further overrides."""
    return compose_train_config(CONF, [*TINY_RUN, *overrides], output_dir)


class TrainingRecorder(Callback):
    """Records what each training process really ran, in `folder`/rank<N>.json at the end of fitting.

    Kept: the process group (world size, backend), whether the module was wrapped for DDP, the autocast dtype
    seen by the network's forward, the training batches and optimiser steps, and the calls of the network's
    modules made during backward, which only gradient checkpointing's recomputation makes.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.phase: str | None = None
        self.record = {"batches": 0, "optimizer_steps": 0, "backward_calls": 0, "forward_autocast": []}

    def setup(self, trainer, pl_module, stage: str) -> None:
        for module in pl_module.net.modules():
            module.register_forward_hook(self._count)

    def _count(self, module, args, output) -> None:
        if self.phase == "backward":
            self.record["backward_calls"] += 1
        elif self.phase == "forward":
            device = next(module.parameters(), torch.empty(0)).device.type
            dtype = str(torch.get_autocast_dtype(device)) if torch.is_autocast_enabled(device) else "off"
            if dtype not in self.record["forward_autocast"]:
                self.record["forward_autocast"].append(dtype)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.phase = "forward"

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.phase = "backward"

    def on_after_backward(self, trainer, pl_module) -> None:
        self.phase = "forward"

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.record["optimizer_steps"] += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.phase = None
        self.record["batches"] += 1

    def on_train_end(self, trainer, pl_module) -> None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.record.update(
            strategy=type(trainer.strategy).__name__,
            precision=trainer.precision,
            accumulate_grad_batches=trainer.accumulate_grad_batches,
            world_size=torch.distributed.get_world_size() if distributed else 1,
            backend=torch.distributed.get_backend() if distributed else None,
            wrapped_module=type(trainer.strategy.model).__name__,
        )
        path = Path(self.folder) / f"rank{trainer.global_rank}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(self.record))
        os.replace(partial, path)
