"""Training callbacks."""

from any2bokeh.callbacks.probes import ConditioningProbes
from any2bokeh.callbacks.video import VideoLogger, disparity_panel, write_mp4

__all__ = ["ConditioningProbes", "VideoLogger", "disparity_panel", "write_mp4"]
