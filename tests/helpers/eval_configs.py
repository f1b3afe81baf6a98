"""conf/evaluate.yaml composed as `python evaluate.py ...` composes it, for the tests."""

from __future__ import annotations

from pathlib import Path

from any2bokeh.utils.hydra import compose_config

ROOT = Path(__file__).resolve().parents[2]


def evaluate_config(tmp_path: Path, *overrides: str):
    """The evaluate config writing under tmp_path (one CPU thread, no progress bar), with further overrides."""
    overrides = ["cpu_threads=1", "trainer.enable_progress_bar=false", *overrides]
    return compose_config(ROOT / "conf", "evaluate", overrides, run_dir=tmp_path / "run", log_dir=tmp_path)
