"""Optics: thin-lens defocus rendering of planar RGBA layers.

``raytrace`` is the exact ground truth (MPIB's ray tracer in pure torch); ``render_layers`` is the fast renderer used
for on-the-fly synthesis, matching it on fronto-parallel scenes.
"""

from .disparity_map import render_disparity_map
from .layers import render_layers
from .random_scene import LayerScene, random_layer_scene
from .raytrace import lens_lattice, raytrace

__all__ = ["raytrace", "render_layers", "render_disparity_map", "lens_lattice", "random_layer_scene", "LayerScene"]
