"""The compositing rule shared by every renderer, and the same rule at K = 0 as a plain function.

Layers are composited nearest first, as MPIB's ray tracer does: a hit whose alpha is below
``ALPHA_SKIP`` adds nothing; otherwise T·alpha·rgb is added to the colour and T·alpha to the weight;
a hit whose alpha is above ``ALPHA_STOP`` ends the ray, else T <- T·(1 - alpha). The pixel is the
colour divided by the weight.
"""

from __future__ import annotations

import torch
from torch import Tensor

# MPIB's compositing thresholds: skip nearly transparent hits, stop rays at nearly opaque ones.
ALPHA_SKIP = 0.01
ALPHA_STOP = 0.99


def composite_over(images: Tensor, alphas: Tensor) -> Tensor:
    """Layers [..., L, C, H, W] with alphas [..., L, 1, H, W], nearest first -> [..., C, H, W].

    What ``raytrace`` and ``render_layers`` give at K = 0 (every lens sample hits the same point), so an
    all-in-focus frame built with it is exactly what the bokeh shows where it is in focus. A pixel with no
    weight (no layer reaches ``ALPHA_SKIP``) is black, as in the renderers.
    """
    colour = torch.zeros_like(images[..., 0, :, :, :])
    weight = torch.zeros_like(alphas[..., 0, :, :, :])
    transmittance = torch.ones_like(weight)
    for layer in range(images.shape[-4]):
        alpha = alphas[..., layer, :, :, :]
        used = torch.where(alpha >= ALPHA_SKIP, alpha, torch.zeros_like(alpha))
        colour += transmittance * used * images[..., layer, :, :, :]
        weight += transmittance * used
        transmittance = torch.where(alpha > ALPHA_STOP, torch.zeros_like(transmittance), transmittance * (1 - used))
    return torch.where(weight > 0, colour / weight.clamp(min=1e-12), torch.zeros_like(colour))
