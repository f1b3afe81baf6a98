"""A deliberately naive thin-lens ray tracer written straight from the renderer's specification, to check ``raytrace``.

It loops over pixels, lens samples and layers in plain Python floats (float64). It builds each ray
from the lens point (u, v, 0) through the in-focus point z_f * (x, y, 1), intersects it with the plane
Z = a*X + b*Y + c, projects the hit back to (X / Z, Y / Z), and samples the layer there with its own bilinear
lookup. It shares no code with ``raytrace``: no shift formula, no corner tables, no fast path; it even writes out
its own compositing thresholds.
"""

import math

import torch

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
