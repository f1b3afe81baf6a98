"""The fast layered renderer against the exact ray tracer."""

import functools
import math
import statistics

import pytest
import torch

from any2bokeh.data.layer_scenes import random_layer_scene
from any2bokeh.optics import raytrace, render_layers


def psnr(a, b):
    return -10 * math.log10(((a - b) ** 2).mean().item() + 1e-20)


def _args(s):
    return s.images, s.alphas, s.planes, s.K, s.disp_focus


SEEDS = range(10)


@functools.lru_cache(maxsize=None)
def random_scene_psnr(seed: int) -> float:
    """PSNR of render_layers against raytrace on a 96 x 128 scene with K as at a 256-pixel width: blur radii up to
    16 px, relatively four times the paper's."""
    s = random_layer_scene(96, 128, num_objects=4 if seed % 2 == 0 else None, seed=seed, reference_width=256)
    if seed % 3 == 0:
        s.K[:] = 16.0  # the paper's largest K, scaled
    if seed % 4 == 1:
        s.disp_focus[:] = 1 / s.planes[0, 0, 2]  # focus on the nearest object: everything behind is defocused
    ref = raytrace(*_args(s), samples_per_side=21)
    fast = render_layers(*_args(s), samples_per_side=21)
    assert fast.shape == ref.shape == (1, 3, 96, 128)
    return psnr(fast, ref)


# Measured on these seeds: 46.3 dB at worst (seed 6: three defocused, overlapping textured layers behind an in-focus
# near object, the case the sub-aperture product approximation handles worst), 66.8 dB median, up to 130 dB.
@pytest.mark.parametrize("seed", SEEDS)
def test_matches_raytrace_above_45db_on_random_scenes(seed):
    assert random_scene_psnr(seed) >= 45


def test_matches_raytrace_at_60db_median_on_random_scenes():
    # A 10x larger squared error anywhere would cost 10 dB: below the floor on the worst scene, below 60 dB median
    # if it is systematic.
    assert statistics.median(random_scene_psnr(seed) for seed in SEEDS) >= 60


def test_finer_sub_apertures_converge_to_raytrace():
    s = random_layer_scene(64, 96, num_objects=4, K=32.0, seed=11, reference_width=96)
    ref = raytrace(*_args(s), samples_per_side=15)
    scores = [psnr(render_layers(*_args(s), samples_per_side=15, cells_per_side=g), ref) for g in (1, 2, 15)]
    assert scores[0] < scores[1] < scores[2]
    # one lens sample per cell is ray tracing itself, up to MPIB's thresholds being applied per pixel
    assert scores[2] > 70


def test_single_layer_and_in_focus_layers_are_exact():
    s = random_layer_scene(40, 56, num_objects=1, K=24.0, seed=5, reference_width=56)
    # object in focus over blurred background: compositing is exact
    ref = raytrace(*_args(s), samples_per_side=11)
    assert torch.allclose(render_layers(*_args(s), samples_per_side=11), ref, atol=1e-4)
    # background alone: a plain convolution, including the image-border rule
    bg = (s.images[:, -1:], s.alphas[:, -1:], s.planes[:, -1:], s.K, s.disp_focus)
    assert torch.allclose(render_layers(*bg, samples_per_side=11), raytrace(*bg, samples_per_side=11), atol=1e-4)


def test_zero_blur_is_plain_compositing():
    s = random_layer_scene(32, 40, num_objects=3, seed=6)
    out = render_layers(s.images, s.alphas, s.planes, 0.0, s.disp_focus, samples_per_side=5)
    ref = raytrace(s.images, s.alphas, s.planes, 0.0, s.disp_focus, samples_per_side=5)
    assert torch.allclose(out, ref, atol=1e-5)


def test_batch_of_scenes_with_per_item_k_and_focus():
    scenes = [random_layer_scene(32, 48, num_objects=3, seed=20 + i, K=32.0, reference_width=64) for i in range(2)]
    args = [torch.cat(t) for t in zip(*(_args(s) for s in scenes))]
    out = render_layers(*args, samples_per_side=9)
    for i, s in enumerate(scenes):
        assert torch.allclose(out[i], render_layers(*_args(s), samples_per_side=9)[0], atol=1e-5)


def test_tilted_planes_and_bad_inputs_raise():
    s = random_layer_scene(16, 16, num_objects=1, seed=7)
    tilted = s.planes.clone()
    tilted[0, 0, 1] = 1e-3
    with pytest.raises(ValueError, match="fronto-parallel"):
        render_layers(s.images, s.alphas, tilted, s.K, s.disp_focus)
    with pytest.raises(ValueError, match="K must"):
        render_layers(s.images, s.alphas, s.planes, -2.0, s.disp_focus)
    with pytest.raises(ValueError, match="disp_focus"):
        render_layers(s.images, s.alphas, s.planes, s.K, 1.01)
    with pytest.raises(ValueError, match="alphas"):
        render_layers(s.images, s.alphas[:, :1].expand(1, 3, 1, 16, 16), s.planes, s.K, s.disp_focus)
