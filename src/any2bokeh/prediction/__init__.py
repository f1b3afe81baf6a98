"""Refocusing batches of videos from a Hydra config: `predict(cfg)` and its pieces (Lightning lives here, not in inference/)."""

from any2bokeh.prediction.jobs import VideoJob, list_jobs
from any2bokeh.prediction.run import PredictionSummary, predict
from any2bokeh.utils.hydra import compose_predict_config

__all__ = ["PredictionSummary", "VideoJob", "compose_predict_config", "list_jobs", "predict"]
