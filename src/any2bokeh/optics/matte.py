"""Matte-guided focus: the subject as its own soft layer on the focal plane, over a filled background.

A disparity map alone blurs whatever it puts off the focal plane, and a real map is soft or misaligned at the
subject's outline, or spans several depths within the subject: the subject loses detail and its colours
bleed into the bokeh. When the subject's mask is known, `render_with_matte` renders

    out = alpha * subject + (1 - alpha) * render(background, disparity outside the matte)

- alpha is the mask refined against the frame by a guided filter (`refine_matte`, He et al.'s edge-aware
  filter with the frame as guide), so hair and fur keep soft alpha that follows the image's own edges;
- the subject sits on the focal plane (its blur radius is 0 inside the matte), so it keeps all its detail;
- behind the matte, the background's colours and disparity are filled from outside it before the background is
  blurred (the colours by `fill_behind`, a push-pull of the pixels outside the dilated matte; the disparity by
  `fill_behind_far`, the farthest disparity around, since what the subject hides lies behind it), so no subject
  colour spreads into the bokeh and no background colour shows through the subject;
- what lies in front of the subject (`near`: out-of-focus pixels nearer than the focal plane, outside the matte)
  still spreads its blur over it, as the lens does: the renderer is linear in the image for a given disparity, so
  rendering the near pixels' colours alone and their coverage alone gives their blurred, premultiplied colour P
  and coverage A, and the subject becomes P + (1 - A) * subject.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _box(x: Tensor, radius: int) -> Tensor:
    """Mean over a (2r + 1)^2 window, [N, C, H, W] -> same (the window shrinks at the borders)."""
    return F.avg_pool2d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


def refine_matte(mask: Tensor, guide: Tensor, radius: int = 4, eps: float = 1e-3) -> Tensor:
    """mask [N, 1, H, W] in [0, 1], guide frames [N, 3, H, W] in [0, 1] -> refined alpha [N, 1, H, W] in [0, 1].

    The guided filter with the frame's grey as guide: locally alpha = a * grey + b, so the matte's edge moves to
    the frame's edges and takes fractional values where the frame is between subject and background.
    """
    grey = guide.mean(dim=1, keepdim=True)
    mean_i, mean_p = _box(grey, radius), _box(mask, radius)
    cov = _box(grey * mask, radius) - mean_i * mean_p
    var = _box(grey * grey, radius) - mean_i * mean_i
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    return (_box(a, radius) * grey + _box(b, radius)).clamp(0, 1)


def fill_behind(values: Tensor, known: Tensor, levels: int = 12) -> Tensor:
    """Fill `values` [N, C, H, W] where `known` [N, 1, H, W] (weights in [0, 1]) is 0, from the known pixels.

    Push-pull: known-weighted means at halving resolutions, then each level's holes take the coarser level's
    values, upsampled. Known pixels keep their values.
    """
    pyramid = [(values * known, known)]
    for _ in range(levels):
        weighted, weight = pyramid[-1]
        if min(weight.shape[-2:]) <= 1:
            break
        pyramid.append((F.avg_pool2d(weighted, 2, ceil_mode=True), F.avg_pool2d(weight, 2, ceil_mode=True)))
    filled = pyramid[-1][0] / pyramid[-1][1].clamp_min(1e-8)
    for weighted, weight in reversed(pyramid[:-1]):
        coarse = F.interpolate(filled, size=weighted.shape[-2:], mode="bilinear", align_corners=False)
        share = weight.clamp(0, 1)
        filled = share * (weighted / weight.clamp_min(1e-8)) + (1 - share) * coarse
    return torch.where(known > 0.999, values, filled)


def fill_behind_far(disparity: Tensor, known: Tensor, levels: int = 12) -> Tensor:
    """Fill `disparity` [N, 1, H, W] where `known` [N, 1, H, W] is below 1 with the farthest (smallest) known
    disparity nearby: a min pyramid of the known pixels, each level's holes taking the coarser level's value.

    What a subject hides lies behind it, so the hole takes the far side of its surroundings: an average would put
    a phantom layer between the subject's neighbours, nearer than the background, whose blur spills over it.
    """
    hole = known <= 0.999
    unset = torch.finfo(disparity.dtype).max
    pyramid = [torch.where(hole, torch.full_like(disparity, unset), disparity)]
    for _ in range(levels):
        if min(pyramid[-1].shape[-2:]) <= 1:
            break
        pyramid.append(-F.max_pool2d(-pyramid[-1], 2, ceil_mode=True))
    filled = pyramid[-1]
    for level in reversed(pyramid[:-1]):
        filled = torch.where(level == unset, F.interpolate(filled, size=level.shape[-2:], mode="nearest"), level)
    # a frame with no known pixel keeps its own values
    return torch.where(filled == unset, disparity, filled)


def render_with_matte(
    render, frames: Tensor, disparity: Tensor, mask: Tensor, grow: int = 1, near: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """`render(frames, disparity)` of the background with the subject laid over it in focus (module docstring).

    Args:
        render: renders frames [N, 3, H, W] with disparity [N, 1, H, W] (d_f and K bound); linear in the frames.
        frames: [N, 3, H, W] in [0, 1]; disparity [N, 1, H, W] in [0, 1]; mask [N, 1, H, W] in [0, 1].
        grow: pixels the matte is dilated by before the background is filled behind it (its soft edge too).
        near: [N, 1, H, W] in [0, 1], the pixels in front of the focal plane and out of focus; their blur is laid
            over the subject (two more renders, when there are such pixels). None: not laid over.

    Returns (the render [N, 3, H, W], the refined alpha [N, 1, H, W]).
    """
    alpha = refine_matte(mask.float(), frames.float())
    behind = F.max_pool2d(alpha, 2 * grow + 1, stride=1, padding=grow) if grow else alpha
    known = (1 - behind).clamp(0, 1) ** 2
    background = fill_behind(frames.float(), known)
    background_disparity = fill_behind_far(disparity.float(), known).clamp(0, 1)
    rendered = render(background, background_disparity)
    # The subject layer is on the focal plane (blur radius 0). Where alpha is fractional the frame mixes the
    # subject with the sharp background, I = alpha F + (1 - alpha) B; with the filled background for B, laying
    # alpha F over the blurred background is I + (1 - alpha) (blur(B) - B): the background's share of the
    # pixel is blurred, the subject's is kept.
    out = frames.float() + (1 - alpha) * (rendered.float() - background)
    if near is not None:
        # outside the dilated matte only: the subject's own pixels are never in front of it
        near = near.float() * (1 - behind)
        if bool(near.amax() > 0):
            spill = render(frames.float() * near, disparity).float()
            cover = render(near.expand(-1, 3, -1, -1).contiguous(), disparity).float().mean(1, keepdim=True)
            out = out + alpha * (spill - cover * out)
    return out.clamp(0, 1), alpha
