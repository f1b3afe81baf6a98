"""`train(cfg)`: one training run of one stage, from a composed config (conf/train.yaml)."""

from __future__ import annotations

import logging
import math
import os
import sys
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig

from any2bokeh.training.checks import check_frame_size, check_train_config
from any2bokeh.training.instantiate import (
    build_net,
    instantiate_callbacks,
    log_hyperparameters,
)
from any2bokeh.utils.hydra import instantiate_loggers
from any2bokeh.utils.threads import torch_threads

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    """Fit the stage module `cfg.module` on `cfg.data`, then optionally test it.

    Returns:
        (metrics, objects): the last logged metrics as floats (train, val and, with `test=true`, test);
        the objects of the run: cfg, datamodule, net, model (the LightningModule), callbacks,
        loggers, trainer.
    """
    check_train_config(cfg)
    with torch_threads(cfg.get("cpu_threads")):
        return _train(cfg)


def _train(cfg: DictConfig) -> tuple[dict[str, float], dict[str, Any]]:
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    log.info(f"Instantiating datamodule <{cfg.data._target_}>")
    datamodule: L.LightningDataModule = hydra.utils.instantiate(cfg.data)
    net = build_net(cfg.model, cfg.get("init_from"))
    check_frame_size(cfg.data, net.size_multiple)
    log.info(f"Instantiating module <{cfg.module._target_}>")
    model: L.LightningModule = hydra.utils.instantiate(cfg.module, net=net)

    loggers = instantiate_loggers(cfg.get("logger"))
    callbacks = instantiate_callbacks(cfg.get("callbacks"), has_logger=bool(loggers))
    log.info(f"Instantiating trainer <{cfg.trainer._target_}>")
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    objects = {
        "cfg": cfg,
        "datamodule": datamodule,
        "net": net,
        "model": model,
        "callbacks": callbacks,
        "loggers": loggers,
        "trainer": trainer,
    }
    try:
        log_hyperparameters(cfg, model, loggers)
        if cfg.get("train", True):
            # our own checkpoints hold the partial optimizer in their hyperparameters: not weights-only
            trainer.fit(model=model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=False)
            save_final_checkpoint(trainer)
        metrics = dict(trainer.callback_metrics)
        optimized = cfg.get("optimized_metric")
        if cfg.get("train", True) and optimized and optimized not in metrics:
            # the run stopped before its first validation (max_steps < val_check_interval): validate the
            # final weights, so that a short run (a sweep's trial, a smoke test) still reports its metric
            log.info(f"{optimized} was not logged while fitting: validating the final weights")
            trainer.validate(model=model, datamodule=datamodule, verbose=False)
            metrics.update(trainer.callback_metrics)
        if cfg.get("test", False):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            if not best:
                log.warning("No best checkpoint: testing the current weights")
            trainer.test(model=model, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
            metrics.update(trainer.callback_metrics)
    finally:
        _finish_wandb()
    return {name: float(value) for name, value in metrics.items()}, objects


def save_final_checkpoint(trainer: L.Trainer) -> None:
    """Make `last.ckpt` hold the weights fitting ended with.

    ModelCheckpoint writes `last.ckpt` only when validation ends, so a run whose last optimiser step came after
    its last saving validation (or whose last validation was skipped) would leave an older `last.ckpt`, and the
    next stage's `init_from` would start from weights that are not the final ones. Every rank calls this.
    """
    callback = trainer.checkpoint_callback
    if callback is None or not callback.save_last or callback.dirpath is None:
        return
    if getattr(callback, "_last_global_step_saved", None) == trainer.global_step:
        return
    path = os.path.join(callback.dirpath, callback.CHECKPOINT_NAME_LAST + callback.FILE_EXTENSION)
    log.info(f"Saving the final weights (step {trainer.global_step}) to {path}")
    trainer.save_checkpoint(path, weights_only=False)


def metric_value(metrics: dict[str, float], name: str | None) -> float | None:
    """The value a sweep optimises; a clear error when the run never logged it."""
    if not name:
        return None
    if name not in metrics:
        raise KeyError(f"optimized_metric={name!r} was not logged; the run logged {sorted(metrics)}")
    value = metrics[name]
    if not math.isfinite(value):
        raise FloatingPointError(f"optimized_metric {name!r} is {value}")
    return value


def _finish_wandb() -> None:
    # A multirun trains its jobs in one process: close this job's wandb run before the next starts.
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()
