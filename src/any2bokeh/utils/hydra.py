"""Hydra helpers the runners share: composing conf/ outside the command line (tests, notebooks,
benchmarks, tools), a config without Hydra's own node, and the loggers of the `logger` group."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


def compose_config(
    config_dir: str | Path,
    config_name: str | None,
    overrides: Sequence[str] = (),
    run_dir: str | Path | None = None,
    log_dir: str | Path | None = None,
) -> DictConfig:
    """`conf/<config_name>.yaml` with command-line style overrides, as its entry point would see it.

    Args:
        config_dir: the repository's `conf/` folder.
        config_name: "train", "predict", "evaluate"; None composes only what the overrides add
            (e.g. ["+data=matting"]), without Hydra's own config.
        overrides: e.g. ["experiment=quickstart", "trainer.max_steps=2"].
        run_dir: the run's own folder (`paths.output_dir`), which the command line takes from Hydra.
        log_dir: the folder below which runs write (`paths.log_dir`).
    """
    config_dir = Path(config_dir).resolve()
    if config_name is not None and not (config_dir / f"{config_name}.yaml").is_file():
        raise FileNotFoundError(f"{config_dir} has no {config_name}.yaml")
    with_hydra = config_name is not None
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=with_hydra)
    with open_dict(cfg):
        if run_dir is not None:
            cfg.paths.output_dir = str(run_dir)
        if log_dir is not None:
            cfg.paths.log_dir = str(log_dir)
    if with_hydra:
        # `${hydra:...}` interpolations resolve against this config
        HydraConfig.instance().set_config(cfg)
    return cfg


def compose_train_config(
    config_dir: str | Path, overrides: Sequence[str] = (), output_dir: str | Path | None = None
) -> DictConfig:
    """`conf/train.yaml` as `python train.py ...` sees it; `output_dir` holds the run (and its logs)."""
    return compose_config(config_dir, "train", overrides, run_dir=output_dir, log_dir=output_dir)


def compose_predict_config(
    config_dir: str | Path, overrides: Sequence[str] = (), log_dir: str | Path | None = None
) -> DictConfig:
    """`conf/predict.yaml` as `python predict.py ...` sees it.

    log_dir: the run's own folder (paths.output_dir); the rendered videos go to `output_dir`, set like any
    other key (e.g. "output_dir=/tmp/out").
    """
    return compose_config(config_dir, "predict", overrides, run_dir=log_dir)


def without_hydra(cfg: DictConfig) -> DictConfig:
    """A copy of the config without Hydra's own node (present when composed with return_hydra_config)."""
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.pop("hydra", None)
    return cfg


def instantiate_loggers(logger_cfg: DictConfig | None) -> list[Logger]:
    """One logger per entry of the `logger` group that has a `_target_`.

    A wandb logger without a group joins the group of its multirun: the sweep folder's name, so the
    runs of one sweep are shown together; its run is named after the job's overrides.
    """
    loggers: list[Logger] = []
    for name, entry in (logger_cfg or {}).items():
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            continue
        if hydra.utils.get_class(entry._target_) is WandbLogger:
            entry = _with_sweep_group(entry)
        log.info(f"Instantiating logger {name} <{entry._target_}>")
        loggers.append(hydra.utils.instantiate(entry))
    return loggers


def _with_sweep_group(entry: DictConfig) -> DictConfig:
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return entry
    hydra_cfg = HydraConfig.get()
    entry = entry.copy()
    with open_dict(entry):
        if entry.get("group") is None:
            entry.group = Path(hydra_cfg.sweep.dir).name
        if entry.get("name") is None:
            entry.name = hydra_cfg.job.override_dirname or f"job{hydra_cfg.job.num}"
    return entry
