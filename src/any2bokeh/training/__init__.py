"""Running a training stage from a Hydra config: `train(cfg)` and its pieces."""

from any2bokeh.training.checks import check_train_config
from any2bokeh.training.instantiate import build_net, instantiate_callbacks
from any2bokeh.training.run import metric_value, train
from any2bokeh.utils.hydra import compose_train_config

__all__ = [
    "build_net",
    "check_train_config",
    "compose_train_config",
    "instantiate_callbacks",
    "metric_value",
    "train",
]
