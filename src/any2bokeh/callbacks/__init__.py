"""Training callbacks."""

from any2bokeh.callbacks.video import VideoLogger, disparity_panel, write_mp4

__all__ = ["VideoLogger", "disparity_panel", "write_mp4"]
