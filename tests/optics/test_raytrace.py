"""Physics of the exact thin-lens ray tracer (MPIB semantics), on small images and coarse lens lattices; and the
tracer against a deliberately naive one written straight from its specification."""

import math

import pytest
import torch

from any2bokeh.data.layer_scenes import random_layer_scene
from any2bokeh.optics import ALPHA_SKIP, ALPHA_STOP, composite_over, lens_lattice, raytrace
from any2bokeh.optics.raytrace import trace_fronto_parallel
from tests.helpers.naive_raytrace import naive_raytrace


def _layers(*layers, height=40, width=48):
    """(rgb [3,H,W] or float, alpha [H,W] or float, c) per layer -> batched images, alphas, planes."""
    images, alphas, planes = [], [], []
    for rgb, alpha, c in layers:
        rgb = torch.as_tensor(rgb, dtype=torch.float32)
        rgb = rgb.view(3, 1, 1) if rgb.shape == (3,) else rgb
        images.append(rgb.expand(3, height, width))
        alphas.append(torch.as_tensor(alpha, dtype=torch.float32).expand(1, height, width))
        planes.append([0.0, 0.0, c])
    return torch.stack(images)[None], torch.stack(alphas)[None], torch.tensor([planes])


def test_lens_lattice_matches_mpib_count_and_disc():
    lens = lens_lattice(101)
    assert lens.shape == (7841, 2)
    assert (lens.pow(2).sum(1) <= 1 + 1e-12).all()
    # boundary points belong to the lens, as in MPIB's `<= 1` test
    assert ((lens - torch.tensor([0.0, 1.0], dtype=torch.float64)).abs().sum(1) < 1e-9).any()
    assert lens_lattice(3).shape == (5, 2)


@pytest.mark.parametrize("disparity", [0.25, 0.75])
def test_bright_pixel_spreads_to_disc_of_radius_k_times_defocus(disparity):
    h = w = 41
    rgb = torch.zeros(3, h, w)
    rgb[:, 20, 20] = 1.0
    images, alphas, planes = _layers((rgb, 1.0, 1 / disparity), height=h, width=w)
    K, d_f = 16.0, 0.5
    out = raytrace(images, alphas, planes, K, d_f, samples_per_side=41)[0, 0]
    radius = K * abs(disparity - d_f)  # 4 px
    # energy is kept
    assert out.sum().item() == pytest.approx(1.0, abs=1e-4)
    ys, xs = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    cy, cx = (out * ys).sum() / out.sum(), (out * xs).sum() / out.sum()
    # (MPIB's float lattice is not exactly symmetric: (0.6, 0.8) falls outside, (-0.6, -0.8) inside)
    assert cy.item() == pytest.approx(20, abs=0.01) and cx.item() == pytest.approx(20, abs=0.01)
    # uniform disc: E[r^2] = R^2 / 2, plus the bilinear splat's variance (1/6 per axis on average)
    second = ((out * ((ys - cy) ** 2 + (xs - cx) ** 2)).sum() / out.sum()).item()
    assert math.sqrt(2 * (second - 1 / 3)) == pytest.approx(radius, rel=0.04)
    # nothing beyond the disc (plus one pixel of bilinear spread)
    far = ((ys - 20) ** 2 + (xs - 20) ** 2).sqrt() > radius + 1.5
    assert out[far].abs().max().item() < 1e-6


def test_plane_at_focus_comes_back_unchanged():
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(3, 40, 48, generator=g)
    alpha = torch.rand(40, 48, generator=g) * 0.5 + 0.5
    images, alphas, planes = _layers((rgb, alpha, 1 / 0.4), (torch.zeros(3), 1.0, 1 / 0.4))
    out = raytrace(images, alphas, planes, 24.0, 0.4, samples_per_side=9)[0]
    # both layers in focus: plain "over" compositing of the front layer on black, every lens sample alike
    alpha_eff = torch.where(alpha > 0.99, torch.ones_like(alpha), alpha)
    expected = rgb * alpha / (alpha + (1 - alpha_eff) * 1.0)
    assert torch.allclose(out, expected, atol=1e-5)


def test_in_focus_foreground_keeps_sharp_edge_over_blurred_background():
    h, w = 32, 64
    g = torch.Generator().manual_seed(1)
    background = torch.rand(3, h, w, generator=g)
    fg_alpha = torch.zeros(h, w)
    fg_alpha[:, :32] = 1.0
    fg_rgb = torch.full((3,), 0.2)
    images, alphas, planes = _layers((fg_rgb, fg_alpha, 2.0), (background, 1.0, 100.0), height=h, width=w)
    out = raytrace(images, alphas, planes, 16.0, 0.5, samples_per_side=15)[0]
    # the foreground half is exactly the foreground: no background bleeds over the sharp edge
    assert (out[:, :, :32] - 0.2).abs().max().item() < 1e-6
    # the other half is the blurred background alone
    bg_only = raytrace(images[:, 1:], alphas[:, 1:], planes[:, 1:], 16.0, 0.5, samples_per_side=15)[0]
    assert torch.allclose(out[:, :, 32:], bg_only[:, :, 32:], atol=1e-6)
    assert (bg_only - background).abs().max().item() > 0.1  # the background really is blurred


def test_out_of_focus_foreground_spreads_semi_transparently_over_sharp_background():
    h, w = 24, 64
    background = torch.ones(3, h, w)
    background[:, ::2] = 0.5  # fine stripes, to see that the background stays sharp
    fg_alpha = torch.zeros(h, w)
    fg_alpha[:, :32] = 1.0
    images, alphas, planes = _layers((torch.zeros(3), fg_alpha, 1.0), (background, 1.0, 100.0), height=h, width=w)
    K, d_f = 8.0, 0.01
    out = raytrace(images, alphas, planes, K, d_f, samples_per_side=21)[0, 0]
    radius = K * (1.0 - d_f)  # ~7.9 px
    row = out[h // 2]
    # far from the edge: the black foreground, and the background untouched and sharp (rays that leave the image
    # miss a layer, so the background also shows through near the left image border: skip that)
    assert row[9 : 32 - 9].abs().max().item() < 1e-6
    assert torch.allclose(out[:, 32 + 9 :], background[0, :, 32 + 9 :], atol=1e-6)
    # inside the foreground's blur band the background shows through (partial occlusion) ...
    band = row[32 - 6 : 32]
    assert (band > 0.02).all()
    # ... and the foreground spreads out past its edge, darkening the background
    assert (row[32 : 32 + 6] < background[0, h // 2, 32 : 32 + 6] - 0.02).all()
    # seen-through fraction rises monotonically across the band (the stripes cancel by dividing by the background)
    visible = row[32 - 7 : 32 + 7] / background[0, h // 2, 32 - 7 : 32 + 7]
    assert (visible[1:] >= visible[:-1] - 1e-6).all()
    assert radius > 7


def test_tilted_plane_is_sharp_where_it_crosses_the_focus():
    h, w = 16, 40
    g = torch.Generator().manual_seed(2)
    rgb = torch.rand(3, h, w, generator=g)
    a, c, x0, d_f = 0.01, 1.0, 20, 0.8  # d(x) = (1 - 0.01 x) / 1 equals d_f at column 20
    images, alphas, _ = _layers((rgb, 1.0, c), height=h, width=w)
    planes = torch.tensor([[[a, 0.0, c]]])
    out = raytrace(images, alphas, planes, 20.0, d_f, samples_per_side=9)[0]
    assert torch.allclose(out[:, 4:-4, x0], rgb[:, 4:-4, x0], atol=1e-5)
    assert (out[:, 4:-4, 2] - rgb[:, 4:-4, 2]).abs().max().item() > 0.05


def test_fronto_parallel_fast_path_equals_general_ray_path():
    s = random_layer_scene(24, 32, num_objects=3, K=24.0, seed=3, reference_width=64)
    fast = raytrace(s.images, s.alphas, s.planes, s.K, s.disp_focus, samples_per_side=7)
    general = raytrace(
        s.images, s.alphas, s.planes, s.K, s.disp_focus, samples_per_side=7, general=True, max_elements=500
    )
    assert torch.allclose(fast, general, atol=1e-5)


def test_batched_focus_and_k_tensors_match_single_calls():
    scenes = [random_layer_scene(16, 24, num_objects=2, seed=i, K=20.0, reference_width=32) for i in range(2)]
    images = torch.cat([s.images for s in scenes])
    alphas = torch.cat([s.alphas for s in scenes])
    planes = torch.cat([s.planes for s in scenes])
    K = torch.cat([s.K for s in scenes])
    d_f = torch.cat([s.disp_focus for s in scenes])
    out = raytrace(images, alphas, planes, K, d_f, samples_per_side=5)
    for i, s in enumerate(scenes):
        single = raytrace(s.images, s.alphas, s.planes, float(s.K), float(s.disp_focus), samples_per_side=5)
        assert torch.allclose(out[i], single[0], atol=1e-6)


def _good_inputs():
    return _layers((torch.rand(3, 8, 8), 1.0, 2.0), height=8, width=8)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(K=-1.0), "K must"),
        (dict(disp_focus=0.0), "disp_focus"),
        (dict(disp_focus=1.5), "disp_focus"),
        (dict(disp_focus=torch.tensor([0.5, 0.5])), "disp_focus"),
        (dict(samples_per_side=1), "samples_per_side"),
    ],
)
def test_bad_scalars_raise(change, message):
    images, alphas, planes = _good_inputs()
    kwargs = dict(K=4.0, disp_focus=0.5, samples_per_side=3) | change
    with pytest.raises(ValueError, match=message):
        raytrace(images, alphas, planes, **kwargs)


def test_bad_shapes_and_planes_raise():
    images, alphas, planes = _good_inputs()
    with pytest.raises(ValueError, match="alphas"):
        raytrace(images, alphas[..., :7], planes, 4.0, 0.5)
    with pytest.raises(ValueError, match="planes"):
        raytrace(images, alphas, planes[:, :, :2], 4.0, 0.5)
    with pytest.raises(ValueError, match="images"):
        raytrace(images[:, :, :2], alphas, planes, 4.0, 0.5)
    with pytest.raises(ValueError, match="c > 0"):
        raytrace(images, alphas, torch.zeros_like(planes), 4.0, 0.5)


@pytest.mark.gpu
def test_cpu_and_cuda_agree():
    s = random_layer_scene(48, 64, num_objects=3, K=32.0, seed=4, reference_width=128)
    args = (s.images, s.alphas, s.planes, s.K, s.disp_focus)
    cpu = raytrace(*args, samples_per_side=15)
    cuda = raytrace(*(a.cuda() for a in args), samples_per_side=15).cpu()
    assert torch.allclose(cpu, cuda, atol=1e-4)
    tilted = s.planes.clone()
    tilted[..., 0] = 1e-4
    cpu = raytrace(s.images, s.alphas, tilted, s.K, s.disp_focus, samples_per_side=7)
    cuda = raytrace(
        s.images.cuda(), s.alphas.cuda(), tilted.cuda(), s.K.cuda(), s.disp_focus.cuda(), samples_per_side=7
    )
    assert torch.allclose(cpu, cuda.cpu(), atol=1e-4)


def test_row_band_and_lens_subset_trace_their_share_of_the_frame():
    s = random_layer_scene(24, 32, num_objects=2, K=24.0, seed=8, reference_width=64)
    lens = lens_lattice(7)
    args = (s.images[0], s.alphas[0], s.planes[0, :, 2].double(), float(s.K), float(s.disp_focus))
    full = trace_fronto_parallel(*args, lens)
    band = trace_fronto_parallel(*args, lens, rows=(8, 16))
    assert torch.equal(band[:, 8:16], full[:, 8:16])
    assert (band[:, :8] == 0).all() and (band[:, 16:] == 0).all()
    assert torch.allclose(full, raytrace(*_args_of(s), samples_per_side=7)[0], atol=1e-6)


def _args_of(s):
    return s.images, s.alphas, s.planes, s.K, s.disp_focus


def test_composite_over_is_the_ray_tracer_at_zero_blur():
    s = random_layer_scene(24, 32, num_objects=3, K=0.0, seed=2)
    # Alphas just below ALPHA_SKIP and just above ALPHA_STOP in stripes, so both thresholds decide pixels.
    alphas = s.alphas.clone()
    alphas[:, :-1, :, 0::4] = ALPHA_SKIP / 2
    alphas[:, :-1, :, 1::4] = (ALPHA_STOP + 1) / 2
    traced = raytrace(s.images, alphas, s.planes, 0.0, s.disp_focus, samples_per_side=3)
    torch.testing.assert_close(composite_over(s.images, alphas), traced, rtol=0, atol=1e-6)
    # Without the thresholds (plain "over") those stripes would differ.
    plain = sum(alphas[:, i] * s.images[:, i] * torch.prod(1 - alphas[:, :i], dim=1) for i in range(alphas.shape[1]))
    assert (plain - traced).abs().amax() > 1e-3


# ---- against the naive reference tracer of tests/helpers/naive_raytrace.py ----


def _scene(seed, planes, height=10, width=12):
    """Random colours and alphas for the given [L, 3] planes, nearest first; the last layer is opaque.

    Front layers get transparent holes, soft ramps, nearly-transparent (below the skip threshold) and nearly-opaque
    (above the stop threshold) patches, so every compositing branch is taken.
    """
    g = torch.Generator().manual_seed(seed)
    n_layers = len(planes)
    images = torch.rand(n_layers, 3, height, width, generator=g, dtype=torch.float64)
    alphas = torch.rand(n_layers, 1, height, width, generator=g, dtype=torch.float64)
    for li in range(n_layers - 1):
        r0, c0 = (
            int(torch.randint(0, height // 2, (1,), generator=g)),
            int(torch.randint(0, width // 2, (1,), generator=g)),
        )
        alphas[li, 0, :, : c0 // 2] = 0  # a fully transparent band
        alphas[li, 0, r0 : r0 + 3, c0 : c0 + 3] = 0.005  # skipped everywhere
        alphas[li, 0, r0 + 4 : r0 + 6, c0 + 4 : c0 + 7] = 0.995  # stops the ray
    alphas[-1] = 1.0
    return images, alphas, torch.tensor(planes, dtype=torch.float64)


# (planes nearest first, K, d_f, lens samples per side). The values are generic on purpose: where a ray lands exactly on
# the image border (say an integer lens shift from an edge pixel), the specification itself jumps, and float rounding
# decides either way in any implementation.
FRONTO = [
    ([[0, 0, 1.5], [0, 0, 150.0]], 6.0, 0.3, 5),
    ([[0, 0, 1.2], [0, 0, 2.0], [0, 0, 120.0]], 9.3, 0.5, 7),  # middle layer exactly in focus
    ([[0, 0, 1.1], [0, 0, 3.7], [0, 0, 190.0]], 14.0, 0.9, 9),  # focus just behind the nearest layer
    ([[0, 0, 2.5], [0, 0, 4.0], [0, 0, 100.0]], 4.0, 0.01, 6),  # background exactly in focus; even n (no centre sample)
    ([[0, 0, 1.3], [0, 0, 4.5], [0, 0, 160.0]], 0.0, 0.6, 5),  # pinhole: plain over-compositing
]


TILTED = [
    ([[0.021, -0.013, 1.53], [0, 0, 150.3]], 6.1, 0.35, 5),
    ([[-0.031, 0.023, 1.43], [0.011, 0.017, 2.61], [0.031, -0.043, 141.7]], 10.3, 0.61, 7),
    ([[0.031, 0.029, 2.03], [-0.011, 0.0, 3.07], [0, 0.047, 110.3]], 15.7, 0.27, 9),  # first plane crosses d_f
    ([[0.0, -0.023, 1.21], [0.019, 0.0, 180.3]], 3.1, 0.95, 6),
]


@pytest.mark.parametrize("planes, K, d_f, n", FRONTO + TILTED)
@pytest.mark.parametrize("general", [False, True])
def test_raytrace_matches_naive_reference_in_float64(planes, K, d_f, n, general):
    images, alphas, planes = _scene(len(planes) * 10 + n, planes)
    expected = naive_raytrace(images, alphas, planes, K, d_f, n)
    out = raytrace(
        images[None], alphas[None], planes[None], K, d_f, samples_per_side=n, general=general, max_elements=97
    )
    assert out.dtype == torch.float64
    assert (out[0] - expected).abs().max().item() < 1e-9


@pytest.mark.parametrize("planes, K, d_f, n", FRONTO + TILTED)
@pytest.mark.parametrize("general", [False, True])
def test_raytrace_matches_naive_reference_in_float32(planes, K, d_f, n, general):
    # float32 layers: the same rays, up to float32 rounding of the inputs and the accumulation
    images, alphas, planes = _scene(len(planes) * 10 + n, planes)
    expected = naive_raytrace(images, alphas, planes, K, d_f, n)
    out = raytrace(
        images[None].float(), alphas[None].float(), planes[None].float(), K, d_f, samples_per_side=n, general=general
    )
    assert out.dtype == torch.float32
    assert (out[0].double() - expected).abs().max().item() < 2e-6


def test_batch_with_per_scene_k_and_focus_matches_naive_reference():
    scenes = [_scene(s, p) for s, (p, _, _, _) in enumerate([FRONTO[0], TILTED[0]])]
    K, d_f = [FRONTO[0][1], TILTED[0][1]], [FRONTO[0][2], TILTED[0][2]]
    images, alphas, planes = (torch.stack(t) for t in zip(*scenes))
    out = raytrace(
        images,
        alphas,
        planes,
        torch.tensor(K, dtype=torch.float64),
        torch.tensor(d_f, dtype=torch.float64),
        samples_per_side=5,
    )
    for i, (im, al, pl) in enumerate(scenes):
        expected = naive_raytrace(im, al, pl, K[i], d_f[i], 5)
        assert (out[i] - expected).abs().max().item() < 1e-9


@pytest.mark.parametrize("rows, cols", [((3, 6), (4, 8)), ((0, 2), (9, 12)), ((7, 10), (0, 1))])
def test_small_front_objects_match_naive_reference(rows, cols):
    # front layers that cover only a small block (inside, or touching the image border) over a background
    images, alphas, planes = _scene(11, [[0, 0, 1.17], [0, 0, 3.9], [0, 0, 133.0]])
    mask = torch.zeros(1, 10, 12, dtype=torch.float64)
    mask[:, rows[0] : rows[1], cols[0] : cols[1]] = 1
    alphas[0] *= mask
    alphas[1] *= mask.roll((1, -1), dims=(1, 2))
    for K, d_f in ((7.3, 0.29), (11.9, 0.81)):
        expected = naive_raytrace(images, alphas, planes, K, d_f, 7)
        out = raytrace(images[None], alphas[None], planes[None], K, d_f, samples_per_side=7)[0]
        assert (out - expected).abs().max().item() < 1e-9


def test_unreached_pixels_are_black_in_both():
    # one out-of-focus layer, transparent on its left half: pixels whose rays all land there (or leave the image) get
    # no weight
    images, alphas, planes = _scene(7, [[0, 0, 2.0]])
    alphas[0, 0, :, :6] = 0
    expected = naive_raytrace(images, alphas, planes, 3.0, 0.3, 5)
    out = raytrace(images[None], alphas[None], planes[None], 3.0, 0.3, samples_per_side=5)[0]
    assert (expected[:, :, :3] == 0).all()
    assert (out - expected).abs().max().item() < 1e-9
