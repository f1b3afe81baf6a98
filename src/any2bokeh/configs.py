"""Composing the Hydra configs of `conf/` outside the command line (tests, notebooks, benchmarks, tools)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict


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
