"""Composing the training config outside the command line (tests, notebooks)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict


def compose_train_config(
    config_dir: str | Path, overrides: Sequence[str] = (), output_dir: str | Path | None = None
) -> DictConfig:
    """`conf/train.yaml` with command-line style overrides, as `python train.py ...` would see it.

    Args:
        config_dir: the repository's `conf/` folder.
        overrides: e.g. ["experiment=quickstart", "trainer.max_steps=2"].
        output_dir: where the run writes (checkpoints, logs, videos); sets paths.output_dir and
            paths.log_dir, which the command line takes from Hydra's run folder.
    """
    config_dir = Path(config_dir).resolve()
    if not (config_dir / "train.yaml").is_file():
        raise FileNotFoundError(f"{config_dir} has no train.yaml")
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
            cfg.paths.log_dir = str(output_dir)
    # `${hydra:...}` interpolations resolve against this config
    HydraConfig.instance().set_config(cfg)
    return cfg
