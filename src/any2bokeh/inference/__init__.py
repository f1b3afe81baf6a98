"""Refocusing real videos, with no Lightning in it: disparity from files or a depth network, and more to come
(focus curves, the weighted overlap inference strategy of §3.5)."""

from .disparity import DepthNetwork, DisparityError, estimate_disparity, load_disparity, prepare_disparity, read_disparity_file

__all__ = [
    "DepthNetwork",
    "DisparityError",
    "estimate_disparity",
    "load_disparity",
    "prepare_disparity",
    "read_disparity_file",
]
