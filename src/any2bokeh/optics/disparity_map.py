"""A classical renderer for an image and its disparity map alone: no layers, no weights.

Real videos come with one disparity map per frame, not with RGBA layers, so the map is sliced into
soft layers, a multiplane image (MPI) in the manner of MPIB's MPI renderer, and the layers are
composited with ``render_layers``: the thin-lens optics of the training ground truth (§3.3, Eq. 1), a
disc of radius r = K·|d - d_f| pixels per layer, nearest layer first ("over"), normalised by the
accumulated alpha. It is the weightless default of inference and the classical baseline row of the
evaluation.

- **Soft layers.** L disparity levels span the frame's own range, nearest first, as many as keep
  neighbouring levels within ``max_radius_step`` (1 px) of blur of each other, at most
  ``num_layers`` (32, as MPIB; levels no pixel falls near are skipped). A pixel of
  disparity d between levels i and i + 1 (fraction f of the way to i + 1) has alpha 1 - f on
  layer i and alpha 1 on layer i + 1; every layer carries the frame's colours. Composited in focus,
  the pixel is (1 - f)·rgb + f·rgb = rgb exactly, and a frame of one disparity is one layer, so a
  fronto-parallel plane renders exactly as ``render_layers`` renders it.
- **Borders.** With several layers, each gets a one-pixel transparent margin around the frame, so that
  ``render_layers`` blurs it with one FFT kernel instead of four (its exact rule for layers that touch
  the image border: about 3x the work). Only lens samples that land within a pixel outside the frame
  count differently, with a fraction of their weight instead of none. ``exact_borders=True`` keeps
  the exact rule; a frame of one disparity (one layer) always does.
- **One product per layer.** The layers are composited with a single lens aperture
  (``cells_per_side=1``): each layer is blurred once and the blurred layers are laid over each
  other, which is what an MPI renderer does; an occluding edge blurs as a soft matte over the
  background, not as exact ray tracing would.
- **Linear light** by default, as the ground truth. ``gamma`` > 1 renders in a gamma-expanded
  space (brighter bokeh discs, as BokehMe's γ = 4) and ``highlight_gain`` > 0 amplifies highlights
  above ``highlight_threshold`` before blurring (both off by default). The output is clipped to [0, 1].
- **Units.** ``disparity`` and ``disp_focus`` are normalised disparities in [0, 1], 1 = nearest;
  ``K`` is in pixels per unit of normalised disparity at the frame's own width (scale it with the
  working width before calling).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .layers import render_layers


def _per_frame(value, name: str, frames: int) -> Tensor:
    """A float or [T] tensor -> float64 [T] (on the CPU, where the scalars are read)."""
    t = torch.as_tensor(value, dtype=torch.float64).flatten().cpu()
    if t.numel() == 1:
        t = t.expand(frames)
    if t.shape != (frames,):
        raise ValueError(f"{name} must be a float or one value per frame ({frames}), got {t.numel()} values")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got {t.tolist()}")
    return t


def soft_layers(disparity: Tensor, num_layers: int, margin: int = 0) -> tuple[Tensor, Tensor]:
    """Slices one disparity map into soft MPI layers (see the module docstring).

    Args:
        disparity: float [H, W] in [0, 1].
        num_layers: levels spanning the map's range; a map of one value gets one.
        margin: transparent pixels added on every side of the layers.

    Returns:
        alphas: float [L, 1, H + 2 * margin, W + 2 * margin], nearest layer first; levels that hold no pixel are
            left out, so L <= num_layers.
        levels: float64 [L], the disparity of each layer, decreasing.
    """
    height, width = disparity.shape
    d_max, d_min = float(disparity.max()), float(disparity.min())
    if d_max - d_min <= 1e-6 or num_layers == 1:
        alphas = disparity.new_zeros(1, 1, height + 2 * margin, width + 2 * margin)
        alphas[..., margin : margin + height, margin : margin + width] = 1
        return alphas, torch.tensor([(d_max + d_min) / 2], dtype=torch.float64)
    levels = torch.linspace(d_max, d_min, num_layers, dtype=torch.float64)
    # position of each pixel along the levels, 0 = nearest level, L - 1 = farthest: [H, W]
    position = (d_max - disparity.double()) / (d_max - d_min) * (num_layers - 1)
    lower = position.floor().clamp(max=num_layers - 2)
    frac = (position - lower).to(disparity.dtype)
    lower = lower.long()
    alphas = disparity.new_zeros(num_layers, height + 2 * margin, width + 2 * margin)
    inner = alphas[:, margin : margin + height, margin : margin + width]  # a view: [L, H, W]
    # alpha 1 - f on the nearer level and 1 on the farther one (when f > 0); 0 elsewhere
    inner.scatter_(0, (lower + 1)[None], (frac > 0).to(alphas.dtype)[None])
    inner.scatter_(0, lower[None], (1 - frac)[None])
    used = alphas.flatten(1).amax(1) > 0  # [L]
    # alphas: [L, H', W'] -> [L_used, 1, H', W']
    return alphas[used][:, None], levels[used.cpu()]


def render_disparity_map(
    images: Tensor,
    disparity: Tensor,
    K,
    disp_focus,
    num_layers: int = 32,
    gamma: float = 1.0,
    highlight_gain: float = 0.0,
    highlight_threshold: float = 0.9,
    samples_per_side: int = 101,
    exact_borders: bool = False,
    max_radius_step: float = 1.0,
) -> Tensor:
    """Renders defocus blur of frames from their disparity maps (see the module docstring).

    Args:
        images: float [T, 3, H, W] in [0, 1], all in focus.
        disparity: float [T, H, W] or [T, 1, H, W], normalised, in [0, 1], 1 = nearest.
        K: float or [T], pixels of blur radius per unit of normalised disparity, >= 0.
        disp_focus: float or [T], the in-focus disparity d_f in [0, 1].
        num_layers: the most soft layers per frame (MPIB's MPI renderer uses 32).
        gamma: images are raised to this power before blurring and to its inverse after; 1 = linear.
        highlight_gain: highlights are multiplied by up to 1 + highlight_gain before blurring; 0 = off.
        highlight_threshold: the brightest channel above which a pixel counts as a highlight.
        samples_per_side: lens lattice size, as in ``render_layers``.
        exact_borders: keep ``render_layers``' exact image-border rule for every layer (slower).
        max_radius_step: pixels of blur radius between neighbouring layers at most: fewer layers when K times
            the frame's disparity range is small (a pixel between two levels blends their blurs).

    Returns:
        float [T, 3, H, W] in [0, 1], the dtype and device of ``images``.
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [T, 3, H, W], got {tuple(getattr(images, 'shape', ()))}")
    frames, _, height, width = images.shape
    if isinstance(disparity, Tensor) and disparity.ndim == 4 and disparity.shape[1] == 1:
        disparity = disparity[:, 0]  # [T, 1, H, W] -> [T, H, W]
    if not isinstance(disparity, Tensor) or tuple(disparity.shape) != (frames, height, width):
        raise ValueError(
            f"disparity must be [T, H, W] = {(frames, height, width)}, got {tuple(getattr(disparity, 'shape', ()))}"
        )
    if not torch.isfinite(disparity).all() or disparity.min() < 0 or disparity.max() > 1:
        raise ValueError(
            f"disparity must be finite and in [0, 1], got [{float(disparity.min())}, {float(disparity.max())}]"
        )
    k = _per_frame(K, "K", frames)
    d_f = _per_frame(disp_focus, "disp_focus", frames)
    if (k < 0).any():
        raise ValueError(f"K must be >= 0, got {k.tolist()}")
    if ((d_f < 0) | (d_f > 1)).any():
        raise ValueError(f"disp_focus must lie in [0, 1], got {d_f.tolist()}")
    if int(num_layers) != num_layers or num_layers < 1 or not max_radius_step > 0:
        raise ValueError(
            f"need an integer num_layers >= 1 and max_radius_step > 0, got {num_layers!r}, {max_radius_step!r}"
        )
    if gamma <= 0 or highlight_gain < 0 or not 0 <= highlight_threshold < 1:
        raise ValueError(
            f"need gamma > 0, highlight_gain >= 0 and highlight_threshold in [0, 1), "
            f"got {gamma}, {highlight_gain}, {highlight_threshold}"
        )

    work = images.float().clamp(0, 1)
    if gamma != 1:
        work = work**gamma
    if highlight_gain > 0:
        brightest = images.float().amax(dim=1, keepdim=True)  # [T, 1, H, W]
        work = work * (
            1 + highlight_gain * ((brightest - highlight_threshold) / (1 - highlight_threshold)).clamp(min=0)
        )
    out = torch.empty_like(work)
    for t in range(frames):
        frame_disparity = disparity[t].to(work)
        span = float(frame_disparity.max() - frame_disparity.min())
        # levels one `max_radius_step` of blur apart at most, and no more than num_layers
        count = min(int(num_layers), math.ceil(float(k[t]) * span / max_radius_step - 1e-9) + 1)
        margin = 0 if exact_borders or count == 1 or span <= 1e-6 else 1
        alphas, levels = soft_layers(frame_disparity, count, margin)
        # [3, H, W] -> [3, H + 2 * margin, W + 2 * margin]
        frame = F.pad(work[t], (margin,) * 4) if margin else work[t]
        # render_layers wants d_f in (0, 1] and d = 1/c > 0; the blur depends on d - d_f alone, so both are
        # mapped to (1 + d) / 2 and K doubled: K'·(d' - d_f') = K·(d - d_f).
        planes = torch.zeros(1, len(levels), 3, dtype=torch.float64, device=work.device)
        planes[0, :, 2] = 2 / (1 + levels)
        # one frame's colours on every layer: [3, H, W] -> [1, L, 3, H, W] (a view)
        layer_images = frame[None, None].expand(1, len(levels), -1, -1, -1)
        rendered = render_layers(
            layer_images,
            alphas[None],
            planes,
            2 * float(k[t]),
            (1 + float(d_f[t])) / 2,
            samples_per_side=samples_per_side,
            cells_per_side=1,
        )[0]
        out[t] = rendered[:, margin : margin + height, margin : margin + width]
    if highlight_gain > 0:
        out = out.clamp(0, 1)
    if gamma != 1:
        out = out.clamp(min=0) ** (1 / gamma)
    return out.clamp(0, 1).to(images.dtype)
