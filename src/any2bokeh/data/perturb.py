"""Disparity perturbations: the stage-2 training noise and the robustness modes of Table 2.

Real depth networks blur edges, misplace boundaries, wobble and grow or shrink thin structures.
These functions imitate that on a clean disparity clip ``[T, 1, H, W]`` in [0, 1]:

- ``gaussian_blur``: soft edges (kornia).
- ``elastic_warp``: a smooth random displacement that bends boundaries (kornia's elastic
  transform, fed a smooth low-resolution displacement so that no large blur kernel is needed).
- ``perlin_noise``: multi-scale Perlin noise. The perlin-noise package is pure Python, so a
  small bank of low-resolution maps is computed once per process and then cropped, rotated,
  flipped and upsampled on demand.
- ``morphology``: grey-level dilation (near things grow) or erosion (they shrink), kornia.

Random fields move smoothly over the clip (two independent draws blended by frame), so the
error drifts like a depth network's instead of flickering.

``perturb_disparity(..., mode)`` gives the evaluation modes of Table 2:
I clean, II blur, III blur + elastic, IV blur + elastic + erosion/dilation.
``DisparityPerturbation`` is the stage-2 training transform, applied with probability p.
Every random choice comes from the caller's ``torch.Generator``: the same generator state gives
the same output. Sizes are given relative to the short side of the frame, so that a setting
means the same at 256 px and at 576 px.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from kornia.geometry.transform import elastic_transform2d
from kornia.morphology import dilation, erosion

from any2bokeh.data.seeding import bernoulli, randint, uniform, uniforms

MODES = ("I", "II", "III", "IV")
PERLIN_FREQUENCIES = (2, 4, 8)  # cycles across one bank map, one row of the bank each


def _check_disparity(disparity: torch.Tensor) -> None:
    if disparity.ndim != 4 or disparity.shape[1] != 1:
        raise ValueError(f"disparity must be [T, 1, H, W], got shape {tuple(disparity.shape)}")
    if not disparity.is_floating_point():
        raise ValueError(f"disparity must be a float tensor, got {disparity.dtype}")


def _check_mask(subject_mask: torch.Tensor | None, disparity: torch.Tensor) -> None:
    if subject_mask is not None and subject_mask.shape != disparity.shape:
        raise ValueError(
            f"subject_mask shape {tuple(subject_mask.shape)} must match disparity {tuple(disparity.shape)}"
        )


def _odd(size: float) -> int:
    return max(1, 2 * round((size - 1) / 2) + 1)


def _drift_weights(num_frames: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin weights [T] that carry a field from one draw to another over the clip.

    cos^2 + sin^2 = 1 keeps the variance of a blend of two independent fields constant.
    """
    phase = torch.linspace(0.0, 1.0, num_frames, device=device, dtype=dtype) * (math.pi / 2)
    return torch.cos(phase), torch.sin(phase)


def gaussian_blur(disparity: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each frame of [T, 1, H, W] with a Gaussian of std ``sigma`` pixels (0: unchanged)."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return disparity
    kernel = _odd(min(8 * sigma + 1, 2 * min(disparity.shape[-2:]) - 1))
    return gaussian_blur2d(disparity, (kernel, kernel), (sigma, sigma), border_type="replicate")


def elastic_warp(disparity: torch.Tensor, generator: torch.Generator, amplitude: float, cells: int = 6) -> torch.Tensor:
    """Warp [T, 1, H, W] by a smooth random displacement field.

    Args:
        amplitude: typical displacement in pixels (the std of the field at its control points;
            interpolation between them lowers it somewhat).
        cells: number of independent displacement cells across the short side (smoothness).
    """
    num_frames, _, height, width = disparity.shape
    device, dtype = disparity.device, disparity.dtype
    if amplitude == 0:
        return disparity
    rows = max(2, cells * height // min(height, width))
    cols = max(2, cells * width // min(height, width))
    # Two independent low-res fields, blended over the clip; bicubic upsampling makes them smooth.
    start, end = torch.randn(2, 1, 2, rows, cols, generator=generator).to(device, dtype)
    cos, sin = _drift_weights(num_frames, device, dtype)
    coarse = cos.view(-1, 1, 1, 1) * start + sin.view(-1, 1, 1, 1) * end  # [T, 2, rows, cols]
    # Bicubic to 1/8 resolution makes the field smooth; bilinear from there to full size is cheap.
    smooth = F.interpolate(coarse, size=(-(-height // 8), -(-width // 8)), mode="bicubic", align_corners=True)
    noise = F.interpolate(smooth, size=(height, width), mode="bilinear", align_corners=True)
    # kornia displaces in normalized coordinates, where the image spans 2 units. The field is
    # already smooth, so kornia's own smoothing kernel is reduced to a single tap.
    alpha = (2 * amplitude / width, 2 * amplitude / height)
    return elastic_transform2d(
        disparity, noise, kernel_size=(1, 1), sigma=(1.0, 1.0), alpha=alpha, padding_mode="border"
    )


@lru_cache(maxsize=1)
def perlin_bank(num_maps: int = 8, resolution: int = 32) -> torch.Tensor:
    """Perlin noise maps [len(PERLIN_FREQUENCIES), num_maps, resolution, resolution], unit std.

    Computed once per process with the perlin-noise package (about a second), with fixed seeds,
    so every process holds the same bank.
    """
    from perlin_noise import PerlinNoise

    coords = [i / resolution for i in range(resolution)]
    bank = np.empty((len(PERLIN_FREQUENCIES), num_maps, resolution, resolution), np.float32)
    for row, frequency in enumerate(PERLIN_FREQUENCIES):
        for index in range(num_maps):
            noise = PerlinNoise(octaves=frequency, seed=1 + index + 1000 * row)
            bank[row, index] = [[noise([y, x]) for x in coords] for y in coords]
    bank = torch.from_numpy(bank)
    bank = bank - bank.mean(dim=(-2, -1), keepdim=True)
    return bank / bank.std(dim=(-2, -1), keepdim=True)


def perlin_noise(
    shape: tuple[int, int, int, int],
    generator: torch.Generator,
    scales: tuple[float, ...] = (0.5, 1.0, 2.0),
    persistence: float = 0.5,
    device=None,
    dtype=torch.float32,
) -> torch.Tensor:
    """Multi-scale Perlin noise [T, 1, H, W] with roughly unit standard deviation.

    Each scale s picks a random bank map and views a random window of it (random rotation,
    flips and offset), stretched over the frame so that about s bank-map widths span its short
    side. Scale s is weighted persistence**i. The window slides a little over the clip.
    """
    num_frames, _, height, width = shape
    bank = perlin_bank().to(device=device, dtype=dtype)
    rows, num_maps = bank.shape[:2]
    total = torch.zeros(shape, device=device, dtype=dtype)
    weights = []
    # Base pixel grid in units of the short side: [-aspect, aspect] x [-1, 1] for a wide frame.
    short = min(height, width)
    ys = (torch.arange(height, device=device, dtype=dtype) * 2 + 1 - height) / short
    xs = (torch.arange(width, device=device, dtype=dtype) * 2 + 1 - width) / short
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack([xx, yy], dim=-1)  # [H, W, 2]
    progress = torch.linspace(0.0, 1.0, num_frames, device=device, dtype=dtype).view(-1, 1)  # [T, 1]
    for i, scale in enumerate(scales):
        row = randint(generator, 0, rows)
        index = randint(generator, 0, num_maps)
        angle = uniform(generator, 0.0, 2 * math.pi)
        flip = 1.0 if bernoulli(generator, 0.5) else -1.0
        rotation = torch.tensor(
            [[math.cos(angle), -math.sin(angle)], [flip * math.sin(angle), flip * math.cos(angle)]],
            device=device,
            dtype=dtype,
        )
        offset = uniforms(generator, -1.0, 1.0, (2,)).to(device, dtype)
        drift = uniforms(generator, -0.25, 0.25, (2,)).to(device, dtype)
        # A bank map spans 2 units of the sampling grid; the reflection padding tiles it seamlessly.
        grid = (base @ rotation.T) * scale  # [H, W, 2]
        shift = offset + drift * progress  # [T, 2]
        grid = grid.unsqueeze(0) + shift.view(-1, 1, 1, 2)  # [T, H, W, 2]
        source = bank[row, index].expand(num_frames, 1, -1, -1)
        layer = F.grid_sample(source, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        total = total + persistence**i * layer
        weights.append(persistence**i)
    return total / math.sqrt(sum(w * w for w in weights))


def morphology(disparity: torch.Tensor, size: int, operation: str) -> torch.Tensor:
    """Grey dilation ("dilate": near regions grow) or erosion ("erode") with a size x size square.

    The square is applied as a 1 x size then a size x 1 pass, which is exact for a flat square
    and far cheaper than the full window.
    """
    if operation not in ("dilate", "erode"):
        raise ValueError(f"operation must be 'dilate' or 'erode', got {operation!r}")
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size must be a positive odd number, got {size}")
    if size == 1:
        return disparity
    op = dilation if operation == "dilate" else erosion
    row = torch.ones(1, size, device=disparity.device, dtype=disparity.dtype)
    return op(op(disparity, row), row.T)


def subject_band(subject_mask: torch.Tensor, margin: int) -> torch.Tensor:
    """Soft weight [T, 1, H, W]: 1 on the subject and within about ``margin`` pixels of it, fading to 0.

    Computed at a reduced resolution (the band is soft anyway), so wide margins stay cheap.
    """
    height, width = subject_mask.shape[-2:]
    mask = (subject_mask > 0.5).to(subject_mask.dtype)
    factor = max(1, margin // 4)
    # Non-overlapping max pooling keeps every subject pixel; then a separable square max filter.
    small = F.max_pool2d(mask, factor, stride=factor, ceil_mode=True)
    reach = -(-margin // factor)
    # Grow past the margin by two blur widths, so that the weight is still ~1 at the margin.
    grow = reach + reach // 2 + 1
    small = F.max_pool2d(small, (1, 2 * grow + 1), stride=1, padding=(0, grow))
    small = F.max_pool2d(small, (2 * grow + 1, 1), stride=1, padding=(grow, 0))
    small = gaussian_blur(small, reach / 4)
    band = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
    return torch.maximum(band.clamp(0.0, 1.0), mask)


def _blend(clean: torch.Tensor, changed: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    return changed if weight is None else torch.lerp(clean, changed, weight)


def perturb_disparity(
    disparity: torch.Tensor,
    mode: str,
    generator: torch.Generator,
    subject_mask: torch.Tensor | None = None,
    *,
    blur_sigma: float = 0.01,
    elastic_amplitude: float = 0.01,
    elastic_cells: int = 6,
    morph_size: float = 0.02,
) -> torch.Tensor:
    """One of Table 2's evaluation modes applied to a disparity clip.

    Args:
        disparity: float [T, 1, H, W] in [0, 1].
        mode: "I" clean, "II" blur, "III" blur + elastic, "IV" blur + elastic + erosion/dilation.
        generator: draws the elastic field and the choice between dilation and erosion.
        subject_mask: optional [T, 1, H, W]; when given, the elastic warp and the morphology act
            only in a band around the subject (the blur acts everywhere).
        blur_sigma, elastic_amplitude, morph_size: as fractions of the frame's short side.
        elastic_cells: displacement cells across the short side.

    Returns:
        float [T, 1, H, W] in [0, 1]. The order is warp, then morphology, then blur, so the output
        has the soft edges of a depth network's.
    """
    if mode not in MODES:
        raise ValueError(f"unknown perturbation mode {mode!r}; expected one of {MODES}")
    _check_disparity(disparity)
    _check_mask(subject_mask, disparity)
    short = min(disparity.shape[-2:])
    out = disparity
    band = None
    if subject_mask is not None and mode in ("III", "IV"):
        band = subject_band(subject_mask, margin=round((elastic_amplitude * 3 + morph_size) * short) + 2)
    if mode in ("III", "IV"):
        out = _blend(out, elastic_warp(out, generator, elastic_amplitude * short, elastic_cells), band)
    if mode == "IV":
        operation = "dilate" if bernoulli(generator, 0.5) else "erode"
        out = _blend(out, morphology(out, _odd(morph_size * short), operation), band)
    if mode in ("II", "III", "IV"):
        out = gaussian_blur(out, blur_sigma * short)
    return out.clamp(0.0, 1.0) if out is not disparity else disparity.clone()


class DisparityPerturbation:
    """Stage-2 training perturbation of a disparity clip, applied with probability p.

    When applied: an elastic warp of the subject's band, multi-scale Perlin noise on the warped
    band, then a random dilation or erosion of it. Each step happens with its own probability and a
    random strength drawn from its range. Without a subject mask, the band is the whole frame.

    Args:
        p: probability of perturbing a clip at all (the paper uses 0.5).
        elastic_amplitude: (low, high) displacement std, fraction of the short side.
        elastic_cells: (low, high) displacement cells across the short side.
        noise_amplitude: (low, high) Perlin noise std, in disparity units.
        morph_size: (low, high) dilation/erosion square side, fraction of the short side.
        step_p: probabilities of the (elastic, noise, morphology) steps once a clip is perturbed.
    """

    def __init__(
        self,
        p: float = 0.5,
        elastic_amplitude: tuple[float, float] = (0.003, 0.015),
        elastic_cells: tuple[int, int] = (3, 8),
        noise_amplitude: tuple[float, float] = (0.01, 0.04),
        morph_size: tuple[float, float] = (0.005, 0.03),
        step_p: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p}")
        for name, (low, high) in (
            ("elastic_amplitude", elastic_amplitude),
            ("elastic_cells", elastic_cells),
            ("noise_amplitude", noise_amplitude),
            ("morph_size", morph_size),
        ):
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got {(low, high)}")
        if len(step_p) != 3 or not all(0.0 <= q <= 1.0 for q in step_p):
            raise ValueError(f"step_p must be three probabilities in [0, 1], got {step_p}")
        self.p = p
        self.elastic_amplitude = tuple(elastic_amplitude)
        self.elastic_cells = tuple(elastic_cells)
        self.noise_amplitude = tuple(noise_amplitude)
        self.morph_size = tuple(morph_size)
        self.step_p = tuple(step_p)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(p={self.p}, elastic_amplitude={self.elastic_amplitude}, "
            f"elastic_cells={self.elastic_cells}, noise_amplitude={self.noise_amplitude}, "
            f"morph_size={self.morph_size}, step_p={self.step_p})"
        )

    def __call__(
        self, disparity: torch.Tensor, generator: torch.Generator, subject_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Perturb disparity [T, 1, H, W] in [0, 1]; returns a new tensor of the same shape in [0, 1]."""
        _check_disparity(disparity)
        _check_mask(subject_mask, disparity)
        # Draw every random number whether or not a step runs, so that one setting does not shift
        # the random stream of the next.
        apply = bernoulli(generator, self.p)
        steps = torch.rand(3, generator=generator) < torch.tensor(self.step_p)
        amplitude = uniform(generator, *self.elastic_amplitude)
        cells = randint(generator, self.elastic_cells[0], self.elastic_cells[1] + 1)
        noise_std = uniform(generator, *self.noise_amplitude)
        size = uniform(generator, *self.morph_size)
        operation = "dilate" if bernoulli(generator, 0.5) else "erode"
        if not apply:
            return disparity.clone()

        short = min(disparity.shape[-2:])
        band = None
        if subject_mask is not None:
            margin = round((3 * amplitude + size) * short) + 2
            band = subject_band(subject_mask, margin)
        out = disparity
        if steps[0]:
            out = _blend(out, elastic_warp(out, generator, amplitude * short, cells), band)
        if steps[1]:
            noise = perlin_noise(out.shape, generator, device=out.device, dtype=out.dtype) * noise_std
            out = out + (noise if band is None else noise * band)
        if steps[2]:
            out = _blend(out, morphology(out, _odd(size * short), operation), band)
        return out.clamp(0.0, 1.0)
