"""Composing the prediction config outside the command line (tests, notebooks)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict


def compose_predict_config(config_dir: str | Path, overrides: Sequence[str] = (), log_dir: str | Path | None = None) -> DictConfig:
    """`conf/predict.yaml` with command-line style overrides, as `python predict.py ...` would see it.

    log_dir: the run's own folder (paths.output_dir), which the command line takes from Hydra's run folder;
    the rendered videos go to `output_dir`, set like any other key (e.g. "output_dir=/tmp/out").
    """
    config_dir = Path(config_dir).resolve()
    if not (config_dir / "predict.yaml").is_file():
        raise FileNotFoundError(f"{config_dir} has no predict.yaml")
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
        cfg = compose(config_name="predict", overrides=list(overrides), return_hydra_config=True)
    if log_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(log_dir)
    # `${hydra:...}` interpolations resolve against this config
    HydraConfig.instance().set_config(cfg)
    return cfg
