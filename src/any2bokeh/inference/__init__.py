"""Refocusing real videos, with no Lightning in it: disparity from files or a depth network, focus curves and
keyframes, and the weighted overlap inference strategy of §3.5."""

from any2bokeh.inference.disparity import (
    DepthNetwork,
    DisparityError,
    estimate_disparity,
    load_disparity,
    prepare_disparity,
    read_disparity_file,
)
from any2bokeh.inference.focus import (
    fill_gaps,
    focus_curve,
    load_masks,
    mask_focus,
    point_focus,
    smooth_curve,
)
from any2bokeh.inference.keyframes import focus_keyframes, k_curve, resolve_focus
from any2bokeh.inference.overlap import (
    OverlapWindow,
    overlap_weights,
    overlap_windows,
    weighted_overlap,
    window_weights,
)
from any2bokeh.inference.tracking import TrackerConfig, track_subject
