"""Inference without Lightning: disparity from files or a depth network, weighted overlap windows, focus curves,
keyframes."""

from any2bokeh.inference.overlap import OverlapWindow, overlap_weights, overlap_windows, weighted_overlap, window_weights
from any2bokeh.inference.focus import fill_gaps, focus_curve, load_masks, mask_focus, point_focus, smooth_curve
from any2bokeh.inference.tracking import TrackerConfig, track_subject
from any2bokeh.inference.keyframes import focus_keyframes, k_curve, resolve_focus

from .disparity import DepthNetwork, DisparityError, estimate_disparity, load_disparity, prepare_disparity, read_disparity_file

__all__ = [
    "DepthNetwork",
    "DisparityError",
    "estimate_disparity",
    "load_disparity",
    "prepare_disparity",
    "read_disparity_file",
]
