"""Writing an evaluation's results (results.json, results.md, modes.png) and logging them."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from any2bokeh.evaluation.plot import plot_modes
from any2bokeh.evaluation.report import markdown_report, metric_cells, table1_row
from any2bokeh.evaluation.summary import COLUMNS
from any2bokeh.utils.atomic import atomic_path, write_json
from any2bokeh.utils.hydra import without_hydra

log = logging.getLogger(__name__)


def write_results(results: dict[str, Any], output_dir: str | Path) -> dict[str, Path]:
    """Write results.json, results.md and (with the synthetic set) modes.png; print the report."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": output_dir / "results.json", "markdown": output_dir / "results.md"}
    write_json(files["json"], _json_safe(results))
    report = markdown_report(results)
    with atomic_path(files["markdown"]) as tmp:
        tmp.write_text(report)
    if any(group.startswith("synthetic/") for group in results["groups"]):
        files["plot"] = plot_modes(results["groups"], results["method"], output_dir / "modes.png")
    log.info("\n" + report)
    print(report, flush=True)
    return files


def _json_safe(value: Any) -> Any:
    """NaN (a metric that could not be computed) as null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def flat_metrics(results: dict[str, Any]) -> dict[str, float]:
    """eval/<testset>/<mode>/<metric> for every computed metric, and the videos used."""
    flat = {}
    for group, summary in results["groups"].items():
        for name, value in summary["metrics"].items():
            flat[f"eval/{group}/{name}"] = float(value)
        flat[f"eval/{group}/videos_used"] = float(summary["videos_used"])
    return flat


def log_results(results: dict[str, Any], files: dict[str, Path], loggers: list[Logger], cfg: DictConfig) -> None:
    """Send the config, the metrics, Table 1 and the plot to every logger (wandb gets the table and plot)."""
    if not loggers:
        return
    config = OmegaConf.to_container(without_hydra(cfg), resolve=True)
    metrics = flat_metrics(results)
    for logger in loggers:
        logger.log_hyperparams(config)
        logger.log_metrics(metrics, step=0)
        if isinstance(logger, WandbLogger):
            _log_wandb(logger, results, files)
        logger.save()
        logger.finalize("success")


def _log_wandb(logger: WandbLogger, results: dict[str, Any], files: dict[str, Path]) -> None:
    import wandb

    columns = ["Method", *(title for _, title in COLUMNS)]
    rows = [
        [f"{name} (paper)", *metric_cells(paper)]
        for name, paper in (results.get("paper") or {}).get("rows", {}).items()
    ]
    rows.append([f"{results['method']} (this run)", *metric_cells(table1_row(results["groups"])[0])])
    media = {"eval/table1": wandb.Table(columns=columns, data=rows)}
    if "plot" in files:
        media["eval/modes"] = wandb.Image(str(files["plot"]))
    logger.experiment.log(media)
    logger.experiment.finish()
