"""`evaluate(cfg)`: one method on the test sets, from a composed config (conf/evaluate.yaml)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from any2bokeh.evaluation.davis import davis_jobs
from any2bokeh.evaluation.methods import MethodBuilder
from any2bokeh.evaluation.module import EvaluationModule
from any2bokeh.evaluation.outputs import log_results, write_results
from any2bokeh.evaluation.records import Job, RecordCache
from any2bokeh.evaluation.scoring import ScorerBuilder, metric_notices
from any2bokeh.evaluation.summary import group_summaries
from any2bokeh.evaluation.testsets import synthetic_jobs
from any2bokeh.evaluation.videos import VideoLoader
from any2bokeh.utils.hydra import instantiate_loggers
from any2bokeh.utils.threads import torch_threads

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Render every video of the configured test sets with `cfg.renderer`, score it, and report.

    Returns:
        (results, objects): results as written to results.json (empty on ranks other than 0 of a
        multi-process run); the objects of the run: cfg, module, trainer, cache.
    """
    with torch_threads(cfg.get("cpu_threads")):
        return _evaluate(cfg)


def evaluation_jobs(cfg: DictConfig) -> list[Job]:
    """The jobs of the configured test sets; at least one set must be configured."""
    jobs: list[Job] = []
    if cfg.synthetic.get("root"):
        jobs += synthetic_jobs(cfg.synthetic.root, list(cfg.synthetic.modes), cfg.synthetic.get("limit"))
    if cfg.davis.get("root"):
        jobs += davis_jobs(cfg.davis.root, cfg.davis.resolution, cfg.davis.get("sequences"))
    if not jobs:
        raise ValueError("nothing to evaluate: set synthetic.root (an exported test set) or davis.root (DAVIS 2017)")
    return jobs


def evaluation_signature(cfg: DictConfig) -> dict[str, Any]:
    """Everything a video's record depends on; a change starts a new cache folder."""

    def plain(node: DictConfig) -> dict[str, Any]:
        return OmegaConf.to_container(node, resolve=True)

    signature = {
        "renderer": plain(cfg.renderer),
        "metrics": plain(cfg.metrics),
        "synthetic": {"root": _absolute(cfg.synthetic.get("root")), "seed": cfg.synthetic.seed},
        "davis": {**plain(cfg.davis), "root": _absolute(cfg.davis.get("root"))},
    }
    # a checkpoint retrained in place must not reuse the old records
    path = cfg.renderer.get("path")
    if path and Path(path).exists():
        stat = Path(path).stat()
        signature["renderer_file"] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return signature


def _absolute(path: str | None) -> str | None:
    return os.path.abspath(path) if path else None


def _evaluate(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    jobs = evaluation_jobs(cfg)
    name = str(cfg.method)
    cache = RecordCache(cfg.cache_dir, evaluation_signature(cfg), name=name)
    cache.prepare()
    loader = VideoLoader(cfg.synthetic.get("root"), cfg.synthetic.seed, cfg.davis)
    module = EvaluationModule(
        jobs,
        cache,
        MethodBuilder(cfg.renderer),
        ScorerBuilder(cfg.metrics),
        loader,
        overwrite=bool(cfg.get("overwrite", False)),
    )
    log.info(f"Evaluating {len(jobs)} videos; records in {cache.folder}")
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer)
    objects = {"cfg": cfg, "module": module, "trainer": trainer, "cache": cache}
    trainer.predict(module, return_predictions=False)
    # every process has written its records; the first one reports
    trainer.strategy.barrier()
    if not trainer.is_global_zero:
        return {}, objects

    keyed, failures = [], []
    for job in jobs:
        record = cache.read(job)
        if record is not None:
            keyed.append((job.key, record))
        elif (failure := cache.read_failure(job)) is not None:
            failures.append(failure)
        else:
            failures.append({"video": job.key, "error": "no record was written (the run stopped early?)"})
    totals: dict[str, int] = {}
    for job in jobs:
        totals[f"{job.testset}/{job.mode}"] = totals.get(f"{job.testset}/{job.mode}", 0) + 1
    summaries = group_summaries(keyed)
    empty = {"metrics": {}, "videos_used": 0, "per_k": {}}
    # every group of the run, in job order, even one whose videos all failed
    groups = {group: {**summaries.get(group, empty), "videos_total": total} for group, total in totals.items()}
    results = {
        "method": name,
        "description": _description(cfg, jobs),
        "groups": groups,
        "paper": OmegaConf.to_container(cfg.paper, resolve=True) if cfg.get("paper") else None,
        "notices": metric_notices(cfg.metrics) + skipped_notices(record for _, record in keyed),
        "failures": [{"video": f["video"], "error": f["error"]} for f in failures],
        "cache": str(cache.folder),
    }
    output_dir = Path(cfg.paths.output_dir)
    files = write_results(results, output_dir)
    loggers = instantiate_loggers(cfg.get("logger"))
    log_results(results, files, loggers, cfg)
    objects.update(files=files, loggers=loggers)
    return results, objects


def skipped_notices(records) -> list[str]:
    """One line per metric that some videos could not give (e.g. FVD on clips shorter than 16 frames)."""
    counts: dict[tuple[str, str], int] = {}
    for record in records:
        for name, why in record["skipped"].items():
            counts[(name, why)] = counts.get((name, why), 0) + 1
    return [f"{name} left out of {count} videos: {why}" for (name, why), count in sorted(counts.items())]


def _description(cfg: DictConfig, jobs: list[Job]) -> list[str]:
    lines = [f"method: {cfg.method} (`{cfg.renderer._target_}`)"]
    if cfg.synthetic.get("root"):
        videos = len({job.video for job in jobs if job.testset == "synthetic"})
        lines.append(
            f"synthetic test set: `{cfg.synthetic.root}`, {videos} videos, modes {', '.join(cfg.synthetic.modes)}"
            f" (perturbation seed {cfg.synthetic.seed})"
        )
    if cfg.davis.get("root"):
        videos = sum(job.testset == "davis" for job in jobs)
        lines.append(f"DAVIS: `{cfg.davis.root}`, {videos} sequences, K = {cfg.davis.k} (paper units)")
    return lines
