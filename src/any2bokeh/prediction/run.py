"""`predict(cfg)`: refocus a batch of videos from a composed config (conf/predict.yaml)."""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from any2bokeh.prediction.jobs import FOCUS_KEYS, FOCUS_KINDS, VideoJob, list_jobs
from any2bokeh.prediction.writer import VideoWriter, is_done, read_log
from any2bokeh.utils.threads import torch_threads

log = logging.getLogger(__name__)


@dataclass
class PredictionSummary:
    """What a run did: one row per video (name, input, status done/skipped/failed, reason, frames, seconds)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    output_dir: str = ""
    run: str = ""

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row["status"] == "failed"]

    @property
    def exit_code(self) -> int:
        """0 when no video failed, else 1."""
        return 1 if self.failed else 0

    def table(self) -> str:
        """A plain-text table of the rows and a count per status."""
        header = ("video", "status", "frames", "s/frame", "reason")
        lines = [header]
        for row in self.rows:
            frames = row.get("frames")
            per_frame = f"{row['seconds'] / frames:.3f}" if frames and row.get("seconds") is not None else ""
            reason = row.get("reason") or ""
            lines.append((row["name"], row["status"], str(frames or ""), per_frame, reason))
        widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
        text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[-1] for line in lines]
        counts = {status: sum(row["status"] == status for row in self.rows) for status in ("done", "skipped", "failed")}
        text.append(", ".join(f"{count} {status}" for status, count in counts.items()) + f" -> {self.output_dir}")
        return "\n".join(text)


def run_settings(cfg: DictConfig) -> dict[str, Any]:
    """The per-video settings the run gives every video (a manifest may override them per row)."""
    return {
        "disparity": cfg.disparity,
        "depth_model": cfg.depth_model,
        "depth_stabilize": cfg.depth_stabilize,
        "matte": cfg.matte,
        "tracker_matte": cfg.tracker_matte,
        "segmenter": cfg.segmenter,
        "save_masks": cfg.save_masks,
        "k": OmegaConf.to_container(cfg.k, resolve=True) if OmegaConf.is_config(cfg.k) else cfg.k,
        "focus": OmegaConf.to_container(cfg.focus, resolve=True),
    }


def demo_jobs(cfg: DictConfig, settings: dict[str, Any]) -> list[VideoJob]:
    """`input=null`: the built-in demo clip, focused on its target unless the run sets a focus."""
    from any2bokeh.prediction.demo import DEMO_NAME, write_demo_clip

    video, point = write_demo_clip(Path(cfg.output_dir) / "demo_input")
    focus = settings["focus"]
    if all(focus.get(kind) is None for kind in FOCUS_KINDS):
        focus["point"] = point
    log.info(f"No input given: rendering the demo clip {video}")
    return [VideoJob(name=DEMO_NAME, input=os.fspath(video), settings=settings, origin="demo")]


# the top-level keys of conf/predict.yaml (Hydra's struct mode refuses others on the command line,
# but `+key=` and configs built in Python get past it)
CONFIG_KEYS = {
    "task_name",
    "input",
    "output_dir",
    "overwrite",
    "save_frames",
    "disparity",
    "depth_model",
    "depth_stabilize",
    "matte",
    "tracker_matte",
    "segmenter",
    "save_masks",
    "focus",
    "k",
    "window",
    "overlap",
    "working_area",
    "cpu_threads",
    "trainer",
    "paths",
    "renderer",
    "hydra",
}


def check_predict_config(cfg: DictConfig) -> None:
    """Errors that concern the whole run, raised before any video is read."""
    unknown = sorted(set(cfg) - CONFIG_KEYS)
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown}; known: {sorted(CONFIG_KEYS - {'hydra'})}")
    unknown_focus = sorted(set(cfg.focus) - set(FOCUS_KEYS))
    if unknown_focus:
        raise ValueError(f"unknown focus key(s) {unknown_focus}; known: {list(FOCUS_KEYS)}")
    if cfg.get("renderer") is None or "_target_" not in cfg.renderer:
        raise ValueError("renderer must be a renderer config (renderer=classical, model or identity)")
    if "path" in cfg.renderer.keys() and OmegaConf.is_missing(cfg.renderer, "path"):
        raise ValueError(
            "renderer=model needs renderer.path=<a Lightning .ckpt, a folder written by save_pretrained, or the "
            "authors' release folder (with renderer.svd=<an SVD img2vid-xt folder>)>"
        )
    if cfg.window < 1 or not 0 <= cfg.overlap < cfg.window:
        raise ValueError(f"need window >= 1 and 0 <= overlap < window, got window={cfg.window}, overlap={cfg.overlap}")
    if cfg.working_area is not None and cfg.working_area < 1:
        raise ValueError(f"working_area must be a positive number of pixels, got {cfg.working_area}")


def predict(cfg: DictConfig) -> PredictionSummary:
    """Render every video of `cfg.input` into `cfg.output_dir`; returns the run's summary.

    Videos already done (their mp4 and sidecar exist) are skipped unless `overwrite=true`. A video that
    fails is reported with its file and reason and the batch goes on; `summary.exit_code` is 1 then.
    """
    check_predict_config(cfg)
    with torch_threads(cfg.get("cpu_threads")):
        return _predict(cfg)


def _predict(cfg: DictConfig) -> PredictionSummary:
    output_dir = Path(cfg.output_dir)
    settings = run_settings(cfg)
    jobs = demo_jobs(cfg, settings) if cfg.input is None else list_jobs(_inputs(cfg.input), settings)
    todo = [job for job in jobs if cfg.overwrite or not is_done(output_dir, job.name)]
    run = uuid.uuid4().hex[:12]
    writer = VideoWriter(output_dir, run, save_frames=cfg.get("save_frames", False))
    global_zero = True
    if todo:
        from any2bokeh.prediction.lightning import RefocusModule, VideoJobsDataModule

        log.info(f"Rendering {len(todo)} of {len(jobs)} videos into {output_dir} ({len(jobs) - len(todo)} done before)")
        trainer = hydra.utils.instantiate(cfg.trainer, callbacks=[writer])
        module = RefocusModule(
            cfg.renderer, precision=str(trainer.precision), progress=cfg.trainer.get("enable_progress_bar", True)
        )
        trainer.predict(module, datamodule=VideoJobsDataModule(todo), return_predictions=False)
        global_zero = trainer.is_global_zero
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # every process has written its videos before the summary reads the log (launched per process, e.g. torchrun)
            trainer.strategy.barrier()
    summary = summarize(jobs, todo, output_dir, writer.run)
    if global_zero:
        log.info("Summary\n" + summary.table())
    return summary


def _inputs(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def summarize(jobs: list[VideoJob], todo: list[VideoJob], output_dir: Path, run: str) -> PredictionSummary:
    """One row per job: skipped (done before), or its run-log entry; a job with no entry failed silently."""
    entries = {entry["name"]: entry for entry in read_log(output_dir, run)}
    pending = {job.name for job in todo}
    rows = []
    for job in jobs:
        if job.name not in pending:
            rows.append({"name": job.name, "input": job.input, "status": "skipped", "reason": "done before"})
        elif job.name in entries:
            rows.append(
                {key: entries[job.name].get(key) for key in ("name", "input", "status", "reason", "frames", "seconds")}
            )
        else:
            rows.append(
                {"name": job.name, "input": job.input, "status": "failed", "reason": "no result: its process stopped"}
            )
    return PredictionSummary(rows=rows, output_dir=os.fspath(output_dir), run=run)
