"""Inference without Lightning: weighted overlap windows, focus curves, keyframes."""

from any2bokeh.inference.overlap import OverlapWindow, overlap_weights, overlap_windows, weighted_overlap, window_weights
