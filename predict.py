"""Refocus videos: `python predict.py input=clips/ focus.point=[0.5,0.6] k=16`.

Hydra composes conf/predict.yaml with the command-line overrides; with no arguments it renders a built-in
demo clip. See the README's "Refocus videos". The exit code is 1 when a video failed.
"""

import sys

import hydra
from omegaconf import DictConfig

from any2bokeh.prediction import predict

# hydra.main returns nothing: the run's exit code is kept here for the process to end with
exit_code = 0


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    global exit_code
    exit_code = predict(cfg).exit_code


if __name__ == "__main__":
    main()
    sys.exit(exit_code)
