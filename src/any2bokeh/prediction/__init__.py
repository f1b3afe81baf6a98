"""Refocusing batches of videos from a Hydra config: `predict(cfg)` and its pieces (Lightning lives here, not in inference/)."""

from any2bokeh.configs import compose_predict_config
from any2bokeh.prediction.jobs import VideoJob, list_jobs
from any2bokeh.prediction.run import PredictionSummary, predict

__all__ = ["PredictionSummary", "VideoJob", "compose_predict_config", "list_jobs", "predict"]
