"""Optics: thin-lens defocus rendering of planar RGBA layers.

``raytrace`` is the exact ground truth (MPIB's ray tracer in pure torch); ``render_layers`` is the fast renderer used
for on-the-fly synthesis, matching it on fronto-parallel scenes; ``composite_over`` is their compositing at K = 0.
"""

from .composite import ALPHA_SKIP, ALPHA_STOP, composite_over
from .disparity_map import render_disparity_map
from .layers import render_layers
from .raytrace import lens_lattice, raytrace

__all__ = [
    "raytrace",
    "render_layers",
    "render_disparity_map",
    "lens_lattice",
    "composite_over",
    "ALPHA_SKIP",
    "ALPHA_STOP",
]
