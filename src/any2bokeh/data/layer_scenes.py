"""Random single-frame layer scenes in the paper's setting (App. A.2), for testing and benchmarking the renderers.

Unlike `scenes.sample_scene` (clips of matted sources on trajectories), a scene here is drawn from
nothing but its seed: noise-textured objects with soft, hair-like edges over a background with bright
highlights, which is what exercises a defocus renderer hardest.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from any2bokeh.data.seeding import keyed_generator, randint, uniform


@dataclass
class LayerScene:
    """A batch of layered scenes, ready for ``raytrace`` / ``render_layers``.

    images [B, L, 3, H, W], alphas [B, L, 1, H, W], planes [B, L, 3] (nearest first, background last),
    K [B], disp_focus [B].
    """

    images: Tensor
    alphas: Tensor
    planes: Tensor
    K: Tensor
    disp_focus: Tensor


def _noise(shape, scales, generator) -> Tensor:
    """Multi-scale value noise in [0, 1]: [C, H, W]."""
    c, h, w = shape
    out = torch.zeros(shape)
    for s in scales:
        low = torch.rand(1, c, max(2, h // s), max(2, w // s), generator=generator)
        out += F.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)[0]
    out = out - out.amin(dim=(1, 2), keepdim=True)
    return out / out.amax(dim=(1, 2), keepdim=True).clamp_min(1e-6)


def random_layer_scene(
    height: int,
    width: int,
    num_objects: int | None = None,
    K: float | None = None,
    seed: int = 0,
    max_K: float = 32.0,
    reference_width: int = 1024,
) -> LayerScene:
    """One random scene (batch of 1): up to 4 textured objects with soft, hair-like alpha edges at c in [1, 5] over a
    textured, opaque background with saturated highlights at c in [100, 200]; focus on one object's disparity.

    K is drawn in [0, max_K] unless given, and scaled by width / reference_width so that blur radii keep the same
    proportion to the image as at the paper's 1024-pixel width.
    """
    g = keyed_generator(seed, "layer_scene")
    n_obj = randint(g, 1, 5) if num_objects is None else num_objects
    k = uniform(g, 0.0, max_K) if K is None else float(K)
    k = k * width / reference_width

    # background: colour texture with bright highlight discs
    bg = 0.15 + 0.6 * _noise((3, height, width), (2, 8, 32, 128), g)
    yy, xx = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(), indexing="ij")
    for _ in range(randint(g, 6, 16)):
        cy, cx = uniform(g, 0.0, height), uniform(g, 0.0, width)
        r = uniform(g, 0.5, 0.5 + width / 150)
        bg = torch.where(((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)[None], torch.ones_like(bg), bg)

    images, alphas, cs = [], [], []
    for _ in range(n_obj):
        cy, cx = uniform(g, 0.0, height), uniform(g, 0.0, width)
        ry = uniform(g, 0.1, 0.35) * height
        rx = uniform(g, 0.1, 0.35) * height
        # wobbly ellipse boundary, a soft ramp a few pixels wide, plus fine strands near the edge
        wobble = 0.25 * (_noise((1, height, width), (8, 32), g)[0] - 0.5)
        dist = torch.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) + wobble
        ramp = uniform(g, 0.04, 0.08)
        alpha = ((1 - dist) / ramp).clamp(0, 1)
        strands = _noise((1, height, width), (1, 2), g)[0]
        edge = (dist > 0.85) & (dist < 1.15)
        alpha = torch.where(edge, alpha * (0.5 + 0.5 * strands), alpha)
        tex = _noise((3, height, width), (2, 8, 32), g)
        base = torch.rand(3, 1, 1, generator=g)
        images.append((0.5 * base + 0.5 * tex).clamp(0, 1))
        alphas.append(alpha[None])
        cs.append(uniform(g, 1.0, 5.0))
    order = sorted(range(n_obj), key=lambda i: cs[i])  # nearest (smallest c) first
    target = randint(g, 0, n_obj)
    disp_focus = 1 / cs[target]
    c_bg = uniform(g, 100.0, 200.0)
    images = torch.stack([images[i] for i in order] + [bg])[None]
    alphas = torch.stack([alphas[i] for i in order] + [torch.ones(1, height, width)])[None]
    planes = torch.zeros(1, n_obj + 1, 3)
    planes[0, :, 2] = torch.tensor([cs[i] for i in order] + [c_bg])
    return LayerScene(images, alphas, planes, torch.tensor([k]), torch.tensor([disp_focus]))
