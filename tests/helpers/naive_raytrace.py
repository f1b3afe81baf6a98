"""``raytrace`` against a deliberately naive thin-lens ray tracer written straight from the renderer's specification.

The reference below loops over pixels, lens samples and layers in plain Python floats (float64). It builds each ray
from the lens point (u, v, 0) through the in-focus point z_f * (x, y, 1), intersects it with the plane
Z = a*X + b*Y + c, projects the hit back to (X / Z, Y / Z), and samples the layer there with its own bilinear
lookup. It shares no code with ``raytrace``: no shift formula, no corner tables, no fast path.
"""

import math

import pytest
import torch

from any2bokeh.optics import raytrace

ALPHA_SKIP, ALPHA_STOP = 0.01, 0.99


def _bilinear(grid, x, y):
    """Bilinear sample of a [H][W] list at (x, y), right / bottom neighbour clamped to the last column / row."""
    h, w = len(grid), len(grid[0])
    x1, y1 = math.floor(x), math.floor(y)
    x2, y2 = min(x1 + 1, w - 1), min(y1 + 1, h - 1)
    fx, fy = x - x1, y - y1
    top = (1 - fx) * grid[y1][x1] + fx * grid[y1][x2]
    bottom = (1 - fx) * grid[y2][x1] + fx * grid[y2][x2]
    return (1 - fy) * top + fy * bottom


def naive_raytrace(images, alphas, planes, K, d_f, n):
    """images [L, 3, H, W], alphas [L, 1, H, W], planes [L, 3] (a, b, c), floats K and d_f -> float64 [3, H, W].

    A pixel no ray reaches with any weight is black (the project's convention; the formula divides by zero there).
    """
    images, alphas, planes = images.double(), alphas.double(), planes.double()
    n_layers, _, h, w = images.shape
    alpha = [alphas[i, 0].tolist() for i in range(n_layers)]
    premul = [[(alphas[i, 0] * images[i, ch]).tolist() for ch in range(3)] for i in range(n_layers)]
    planes = planes.tolist()
    coords = [i * 2 / (n - 1) - 1 for i in range(n)]
    lens = [(p * K, q * K) for p in coords for q in coords if p * p + q * q <= 1]
    z_f = 1 / d_f
    out = [[[0.0] * w for _ in range(h)] for _ in range(3)]
    for y in range(h):
        for x in range(w):
            colour, weight = [0.0, 0.0, 0.0], 0.0
            for u, v in lens:
                # ray P(t) = (u, v, 0) + t * (z_f x - u, z_f y - v, z_f); P(1) is the in-focus point z_f (x, y, 1)
                dx, dy, dz = z_f * x - u, z_f * y - v, z_f
                trans = 1.0
                for li, (a, b, c) in enumerate(planes):
                    # a (u + t dx) + b (v + t dy) + c = t dz
                    t = (a * u + b * v + c) / (dz - a * dx - b * dy)
                    hx, hy, hz = u + t * dx, v + t * dy, t * dz
                    xp, yp = hx / hz, hy / hz
                    if not (0 <= xp < w and 0 <= yp < h):
                        continue
                    al = _bilinear(alpha[li], xp, yp)
                    if al < ALPHA_SKIP:
                        continue
                    for ch in range(3):
                        colour[ch] += trans * _bilinear(premul[li][ch], xp, yp)
                    weight += trans * al
                    if al > ALPHA_STOP:
                        break
                    trans *= 1 - al
            for ch in range(3):
                out[ch][y][x] = colour[ch] / weight if weight > 0 else 0.0
    return torch.tensor(out, dtype=torch.float64)


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
        r0, c0 = int(torch.randint(0, height // 2, (1,), generator=g)), int(torch.randint(0, width // 2, (1,), generator=g))
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
    out = raytrace(images[None], alphas[None], planes[None], K, d_f, samples_per_side=n, general=general, max_elements=97)
    assert out.dtype == torch.float64
    assert (out[0] - expected).abs().max().item() < 1e-9


@pytest.mark.parametrize("planes, K, d_f, n", FRONTO + TILTED)
@pytest.mark.parametrize("general", [False, True])
def test_raytrace_matches_naive_reference_in_float32(planes, K, d_f, n, general):
    # float32 layers: the same rays, up to float32 rounding of the inputs and the accumulation
    images, alphas, planes = _scene(len(planes) * 10 + n, planes)
    expected = naive_raytrace(images, alphas, planes, K, d_f, n)
    out = raytrace(images[None].float(), alphas[None].float(), planes[None].float(), K, d_f, samples_per_side=n, general=general)
    assert out.dtype == torch.float32
    assert (out[0].double() - expected).abs().max().item() < 2e-6


def test_batch_with_per_scene_k_and_focus_matches_naive_reference():
    scenes = [_scene(s, p) for s, (p, _, _, _) in enumerate([FRONTO[0], TILTED[0]])]
    K, d_f = [FRONTO[0][1], TILTED[0][1]], [FRONTO[0][2], TILTED[0][2]]
    images, alphas, planes = (torch.stack(t) for t in zip(*scenes))
    out = raytrace(images, alphas, planes, torch.tensor(K, dtype=torch.float64), torch.tensor(d_f, dtype=torch.float64), samples_per_side=5)
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
