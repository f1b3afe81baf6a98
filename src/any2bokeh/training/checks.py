"""Checks of the composed training config, run before anything heavy is built."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from any2bokeh.stages import BokehModule

REQUIRED_KEYS = ("module", "model", "data", "trainer")


def check_train_config(cfg: DictConfig) -> None:
    """Raise a clear error for a config that would fail late or train the wrong thing.

    - the groups a run needs are present, and `module` names a stage LightningModule;
    - stages 2 and 3 refine a trained model: when the model config declares pretrained weights
      (`model.pretrained`, e.g. SVD), they need `init_from` (the previous stage's .ckpt or saved folder) or
      `ckpt_path` (a resumed run); a model without them (the tiny random one) may start any stage;
    - `init_from` and `ckpt_path` exist;
    - the run stops: `trainer.max_steps` or `trainer.max_epochs` is set.
    """
    missing = [key for key in REQUIRED_KEYS if cfg.get(key) is None]
    if missing:
        raise ValueError(f"the training config lacks {missing}; compose it from conf/train.yaml")

    target = cfg.module.get("_target_")
    try:
        module_cls = hydra.utils.get_class(target)
    except Exception as error:  # hydra wraps the import error; keep its message
        raise ValueError(f"module._target_={target!r} is not an importable class: {error}") from error
    if not issubclass(module_cls, BokehModule):
        raise ValueError(f"module._target_={target!r} is not a stage module (a subclass of BokehModule)")

    init_from, ckpt_path = cfg.get("init_from"), cfg.get("ckpt_path")
    pretrained = cfg.model.get("pretrained")
    if module_cls.needs_trained_start and pretrained is not None and init_from is None and ckpt_path is None:
        raise ValueError(
            f"{module_cls.__name__} refines a trained model, but init_from is not set and the model would start "
            f"from the pretrained weights model.pretrained={pretrained!r}: pass init_from=<the previous stage's "
            ".ckpt or saved folder>"
        )
    for key, value in (("init_from", init_from), ("ckpt_path", ckpt_path)):
        if value is not None and not Path(value).exists():
            raise FileNotFoundError(f"{key}={value!r} does not exist")

    max_steps = cfg.trainer.get("max_steps", -1)
    max_epochs = cfg.trainer.get("max_epochs", None)
    if (max_steps is None or max_steps < 0) and (max_epochs is None or max_epochs < 0):
        raise ValueError(
            f"the run never stops: set trainer.max_steps or trainer.max_epochs (got {max_steps}, {max_epochs})"
        )


def check_frame_size(data_cfg: DictConfig, multiple: int) -> None:
    """The clips' height and width must be multiples of the network's downsampling (64 for SVD)."""
    height, width = data_cfg.get("height"), data_cfg.get("width")
    if height is None or width is None:
        return
    if height % multiple or width % multiple:
        raise ValueError(
            f"data.height={height} and data.width={width} must be multiples of {multiple} for this model "
            f"(e.g. {max(multiple, height // multiple * multiple)}x{max(multiple, width // multiple * multiple)})"
        )
