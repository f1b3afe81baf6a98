"""Composed training configs for the tests: the tiny model on small procedural clips, 2 steps."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from any2bokeh.training import compose_train_config

ROOT = Path(__file__).resolve().parents[1]
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
