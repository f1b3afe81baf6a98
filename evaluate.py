"""Evaluate one method on the test sets (Tables 1 and 2): `python evaluate.py renderer=classical`.

Hydra composes conf/evaluate.yaml with the command-line overrides; see the README's "Evaluate"
section for the test sets, the metrics' weights, resuming and several GPUs.
"""

import hydra
from omegaconf import DictConfig

from any2bokeh.evaluation import evaluate


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
