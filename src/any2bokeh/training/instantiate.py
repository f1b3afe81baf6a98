"""Building the run's objects from the composed config: the network, callbacks and loggers."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import hydra
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf
from torch import nn

from any2bokeh.utils.hydra import without_hydra

log = logging.getLogger(__name__)


def model_class(model_cfg: DictConfig) -> type:
    """The class the model config builds: its `_target_` is the class or one of its classmethods."""
    target = hydra.utils.get_object(model_cfg._target_)
    if inspect.isclass(target):
        return target
    owner = getattr(target, "__self__", None)
    if not inspect.isclass(owner):
        raise ValueError(f"model._target_ {model_cfg._target_!r} is neither a class nor a classmethod of one")
    return owner


def build_net(model_cfg: DictConfig, init_from: str | None = None) -> nn.Module:
    """The network a stage starts from.

    Args:
        model_cfg: the `model` config group (SVD or the tiny model), used when `init_from` is None.
        init_from: the previous stage's result, a Lightning `.ckpt` or a folder written by
            `save_pretrained`; it is loaded with the model class's `from_checkpoint` / `from_pretrained`.
            The architecture and options then come from that file; of `model_cfg`, only
            `gradient_checkpointing` and `dtype` apply.
    """
    if init_from is None:
        log.info(f"Building the network <{model_cfg._target_}>")
        return hydra.utils.instantiate(model_cfg)
    path = Path(init_from)
    cls = model_class(model_cfg)
    settings = {
        "gradient_checkpointing": model_cfg.get("gradient_checkpointing", False),
        "dtype": model_cfg.get("dtype"),
    }
    if path.is_dir():
        log.info(f"Loading the network from the folder {path}")
        return cls.from_pretrained(path, **settings)
    if path.is_file() and path.suffix == ".ckpt":
        log.info(f"Loading the network from the checkpoint {path}")
        return cls.from_checkpoint(path, **settings)
    if not path.exists():
        raise FileNotFoundError(f"init_from={init_from!r} does not exist")
    raise ValueError(f"init_from={init_from!r} is neither a .ckpt file nor a saved model folder")


def instantiate_callbacks(callbacks_cfg: DictConfig | None, has_logger: bool) -> list[Callback]:
    """One callback per entry of the `callbacks` group that has a `_target_`.

    The learning-rate monitor needs a logger; with `logger=none` it is left out (with a warning).
    """
    callbacks: list[Callback] = []
    for name, entry in (callbacks_cfg or {}).items():
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            continue
        if not has_logger and hydra.utils.get_class(entry._target_) is LearningRateMonitor:
            log.warning(f"Leaving out callback {name}: the learning-rate monitor needs a logger")
            continue
        log.info(f"Instantiating callback {name} <{entry._target_}>")
        callbacks.append(hydra.utils.instantiate(entry))
    return callbacks


def log_hyperparameters(cfg: DictConfig, module: nn.Module, loggers: list[Logger]) -> None:
    """Send the whole resolved config, plus parameter counts, to every logger."""
    if not loggers:
        return
    config = OmegaConf.to_container(without_hydra(cfg), resolve=True)
    parameters = list(module.parameters())
    config["parameters"] = {
        "total": sum(p.numel() for p in parameters),
        "trainable": sum(p.numel() for p in parameters if p.requires_grad),
    }
    for logger in loggers:
        logger.log_hyperparams(config)
