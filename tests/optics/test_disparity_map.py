"""The classical renderer: a disparity map sliced into soft layers, composited with render_layers' optics."""

import math

import pytest
import torch

from any2bokeh.optics import render_disparity_map, render_layers
from any2bokeh.optics.disparity_map import soft_layers

H, W = 48, 64
LENS = 21  # lens lattice per side: enough for these radii, quick


def psnr(a, b):
    return -10 * math.log10(((a - b) ** 2).mean().item() + 1e-20)


def texture(seed, height=H, width=W):
    """Fine random texture in [0, 1]: [3, H, W]."""
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(seed))


def high_frequency_energy(image):
    """Mean squared response to a 3x3 Laplacian: [3, H, W] -> float."""
    lap = 4 * image[:, 1:-1, 1:-1] - image[:, :-2, 1:-1] - image[:, 2:, 1:-1] - image[:, 1:-1, :-2] - image[:, 1:-1, 2:]
    return float((lap**2).mean())


def two_planes(d_near=0.9, d_far=0.1, height=72, width=96):
    """A textured rectangle over a textured background: the true layers, and the all-in-focus frame and
    disparity map that a video would give."""
    near, far = texture(1, height, width), texture(2, height, width)
    alpha = torch.zeros(1, height, width)
    alpha[:, 20:52, 28:68] = 1
    images = torch.stack([near, far])[None]  # [1, 2, 3, H, W]
    alphas = torch.stack([alpha, torch.ones(1, height, width)])[None]  # [1, 2, 1, H, W]
    planes = torch.tensor([[[0.0, 0.0, 1 / d_near], [0.0, 0.0, 1 / d_far]]], dtype=torch.float64)
    frame = alpha * near + (1 - alpha) * far
    disparity = torch.where(alpha[0] > 0, d_near, d_far)
    return images, alphas, planes, frame, disparity, alpha[0] > 0


def away_from(mask, distance, image_border=0):
    """Pixels farther than `distance` (chessboard) from the boundary of `mask`, and `image_border` from the
    image's edge."""
    pool = lambda m: torch.nn.functional.max_pool2d(m[None, None].float(), 2 * distance + 1, 1, distance)[0, 0] > 0  # noqa: E731
    keep = ~pool(mask) | ~pool(~mask)
    if image_border:
        keep[:image_border] = keep[-image_border:] = False
        keep[:, :image_border] = keep[:, -image_border:] = False
    return keep


def test_a_plane_at_the_focus_stays_sharp():
    image = texture(0)[None]
    flat = render_disparity_map(image, torch.full((1, H, W), 0.4), K=32.0, disp_focus=0.4, samples_per_side=LENS)
    assert psnr(flat, image) >= 40
    # the in-focus half of a two-depth frame keeps its detail away from the depth edge
    disparity = torch.full((1, H, W), 0.4)
    disparity[:, :, W // 2 :] = 0.0
    out = render_disparity_map(image, disparity, K=16.0, disp_focus=0.4, samples_per_side=LENS)
    sharp = (slice(None), slice(None), slice(2, H - 2), slice(2, W // 2 - 10))
    assert psnr(out[sharp], image[sharp]) >= 40
    assert psnr(out[..., W // 2 + 10 :], image[..., W // 2 + 10 :]) < 25  # the far half is blurred


def test_a_defocused_plane_loses_its_high_frequencies():
    image = texture(3)[None]
    out = render_disparity_map(image, torch.full((1, H, W), 0.2), K=20.0, disp_focus=0.8, samples_per_side=LENS)
    assert high_frequency_energy(out[0]) < 0.02 * high_frequency_energy(image[0])
    # blur moves colour around but keeps its mean
    assert abs(float(out.mean() - image.mean())) < 0.01


@pytest.mark.parametrize("focus", ["near", "far", "between"])
def test_two_planes_agree_with_render_layers_away_from_the_occlusion_edge(focus):
    d_near, d_far = 0.9, 0.1
    d_f = {"near": d_near, "far": d_far, "between": 0.5}[focus]
    images, alphas, planes, frame, disparity, rectangle = two_planes(d_near, d_far)
    K = 12.0  # radii up to 9.6 px
    truth = render_layers(images, alphas, planes, K, d_f, samples_per_side=LENS)[0]
    # the default transparent margin changes only what lies within a blur radius of the image's edge
    for exact_borders, image_border in ((True, 0), (False, 11)):
        out = render_disparity_map(
            frame[None], disparity[None], K, d_f, samples_per_side=LENS, exact_borders=exact_borders
        )
        keep = away_from(rectangle, 11, image_border)
        assert keep[rectangle].sum() > 100 and keep[~rectangle].sum() > 400
        assert torch.allclose(out[0][:, keep], truth[:, keep], atol=1e-4)
        assert psnr(out[0][:, keep], truth[:, keep]) >= 40


def test_a_single_plane_renders_exactly_as_render_layers():
    image = texture(4)
    for d, d_f, K in ((0.3, 0.7, 24.0), (0.0, 1.0, 8.0), (1.0, 0.0, 5.5)):
        out = render_disparity_map(image[None], torch.full((1, H, W), d), K, d_f, samples_per_side=LENS)
        planes = torch.tensor([[[0.0, 0.0, 2 / (1 + d)]]], dtype=torch.float64)
        # the same plane in render_layers' own units: c = 1/d with d = (1 + d) / 2, K doubled
        truth = render_layers(
            image[None, None], torch.ones(1, 1, 1, H, W), planes, 2 * K, (1 + d_f) / 2, samples_per_side=LENS
        )
        assert torch.allclose(out, truth, atol=1e-6)
    # and in plain units where render_layers can take them (d_f > 0, d > 0)
    out = render_disparity_map(image[None], torch.full((1, H, W), 0.3), 24.0, 0.7, samples_per_side=LENS)
    planes = torch.tensor([[[0.0, 0.0, 1 / 0.3]]], dtype=torch.float64)
    truth = render_layers(image[None, None], torch.ones(1, 1, 1, H, W), planes, 24.0, 0.7, samples_per_side=LENS)
    assert torch.allclose(out, truth, atol=1e-5)


def test_soft_layers_composite_back_to_the_input_in_focus():
    disparity = torch.rand(H, W, generator=torch.Generator().manual_seed(5))
    alphas, levels = soft_layers(disparity, 8)
    assert alphas.shape == (8, 1, H, W) and (levels.diff() < 0).all()
    # front to back "over": the weights T_i * alpha_i of every pixel sum to one
    transmittance, total = torch.ones(H, W), torch.zeros(H, W)
    for alpha in alphas[:, 0]:
        total += transmittance * alpha
        transmittance = transmittance * (1 - alpha)
    assert torch.allclose(total, torch.ones(H, W), atol=1e-6)
    # each pixel lies on the layers around its disparity: the alpha-weighted level is its disparity
    weights = torch.stack([transmittance_weights for transmittance_weights in _over_weights(alphas[:, 0])])
    assert torch.allclose((weights * levels.float()[:, None, None]).sum(0), disparity, atol=1e-5)
    image = texture(6)[None]
    out = render_disparity_map(image, disparity[None], K=0.0, disp_focus=0.5, samples_per_side=LENS)
    assert torch.allclose(out, image, atol=1e-5)


def _over_weights(alphas):
    transmittance = torch.ones_like(alphas[0])
    for alpha in alphas:
        yield transmittance * alpha
        transmittance = transmittance * (1 - alpha)


def test_gamma_and_highlights_are_off_by_default_and_brighten_bokeh():
    image = torch.full((1, 3, H, W), 0.1)
    image[..., 22:26, 30:34] = 0.98  # a small highlight
    disparity = torch.full((1, H, W), 0.1)
    args = dict(K=16.0, disp_focus=0.6, samples_per_side=LENS)
    linear = render_disparity_map(image, disparity, **args)
    assert torch.equal(linear, render_disparity_map(image, disparity, gamma=1.0, highlight_gain=0.0, **args))
    boosted = render_disparity_map(image, disparity, highlight_gain=4.0, **args)
    gamma = render_disparity_map(image, disparity, gamma=2.2, **args)
    disc = (slice(None), slice(None), slice(20, 28), slice(28, 36))
    assert boosted[disc].mean() > linear[disc].mean() + 0.02
    assert gamma[disc].mean() > linear[disc].mean() + 0.02
    for out in (boosted, gamma):
        assert out.min() >= 0 and out.max() <= 1


def test_bad_arguments_are_named():
    image, disparity = torch.rand(2, 3, 8, 8), torch.rand(2, 8, 8)
    with pytest.raises(ValueError, match="K must be >= 0"):
        render_disparity_map(image, disparity, -1.0, 0.5)
    with pytest.raises(ValueError, match="disp_focus must lie in"):
        render_disparity_map(image, disparity, 4.0, torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="K must be a float or one value per frame"):
        render_disparity_map(image, disparity, torch.ones(3), 0.5)
    with pytest.raises(ValueError, match=r"disparity must be \[T, H, W\]"):
        render_disparity_map(image, disparity[:1], 4.0, 0.5)
    with pytest.raises(ValueError, match="finite and in"):
        render_disparity_map(image, disparity * float("nan"), 4.0, 0.5)
