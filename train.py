"""Train one stage of Any-to-Bokeh: `python train.py experiment=quickstart`.

Hydra composes conf/train.yaml with the command-line overrides; see the README for the paper's three
stages, sweeps (`-m`) and wandb.
"""

import hydra
from omegaconf import DictConfig

from any2bokeh.training import metric_value, train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    metrics, _ = train(cfg)
    # a sweeper (multirun) optimises the returned value
    return metric_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
