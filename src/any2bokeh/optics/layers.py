"""Fast layered defocus rendering that reproduces the ray tracer for fronto-parallel layers.

For a fronto-parallel layer of disparity d, lens point (u, v) maps pixel (x, y) to (x, y) + (u, v) * (d - d_f)
(see ``raytrace``): a uniform translation. Summed over lens samples, one layer alone is therefore exactly a
convolution of its (alpha, alpha*rgb) with the lens lattice scaled by K*(d - d_f) and splatted bilinearly.

Compositing several layers is not a convolution: each lens sample sees its own occlusion. Averaging the layers
first and compositing the averages (the "product approximation") is exact wherever at most one layer varies over
the lens footprint, and wrong where a defocused edge overlaps another defocused, textured layer. So the lens is
split into sub-apertures (cells of a square grid over the lens disc); each sub-aperture is rendered with the product
approximation and the sub-aperture sums are added. Inside a small sub-aperture the footprints shrink, and the
approximation error shrinks with them. The lens grid has ceil(R / 12 px) cells per side for a largest blur radius R,
and at least 2 when two or more layers are defocused.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .composite import ALPHA_SKIP, ALPHA_STOP
from .raytrace import FOCUS_SNAP, check_layers, corner_images, lens_lattice

# Sub-aperture cell size: the largest blur radius covered by one cell of the lens grid, in pixels.
CELL_RADIUS_PX = 12.0


def _fast_size(n: int) -> int:
    """Smallest integer >= n whose prime factors are 2, 3 and 5 (fast FFT lengths)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def lens_cells(lens: Tensor, cells_per_side: int) -> list[Tensor]:
    """Splits unit-lens samples [S, 2] into the non-empty cells of a square grid over [-1, 1]^2; index lists."""
    g = cells_per_side
    ij = ((lens + 1) / 2 * g).floor().clamp(0, g - 1).long()
    cell = ij[:, 0] * g + ij[:, 1]
    return [torch.nonzero(cell == c).flatten() for c in torch.unique(cell)]


def render_layers(
    images: Tensor,
    alphas: Tensor,
    planes: Tensor,
    K,
    disp_focus,
    samples_per_side: int = 101,
    cells_per_side: int | None = None,
) -> Tensor:
    """Renders defocus blur of fronto-parallel RGBA layers fast; matches ``raytrace`` (same arguments and output).

    Only fronto-parallel planes (a = b = 0) are supported; tilted planes raise ``ValueError`` (use ``raytrace``).

    Args:
        images: float [B, L, 3, H, W] in [0, 1], nearest layer first.
        alphas: float [B, L, 1, H, W] in [0, 1].
        planes: float [B, L, 3], (a, b, c) with a = b = 0: layer disparity d = 1 / c.
        K: float or [B] tensor, blur strength, >= 0.
        disp_focus: float or [B] tensor, focus disparity in (0, 1].
        samples_per_side: lens lattice size, as in ``raytrace``.
        cells_per_side: sub-aperture grid size; by default chosen from the largest blur radius.

    Returns:
        float [B, 3, H, W].
    """
    K, d_f = check_layers(images, alphas, planes, K, disp_focus)
    if (planes[..., :2] != 0).any():
        raise ValueError(
            "render_layers supports fronto-parallel planes only (a = b = 0); use raytrace for tilted planes"
        )
    lens = lens_lattice(samples_per_side).to(images.device)
    # FFTs need float32 or float64
    work = images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32
    out = torch.stack(
        [
            _render_one(
                images[i].to(work), alphas[i].to(work), planes[i, :, 2].double(), K[i], d_f[i], lens, cells_per_side
            )
            for i in range(images.shape[0])
        ]
    )
    return out.to(images.dtype)


def _render_one(images, alphas, c, K, d_f, lens, cells_per_side):
    """One batch element: images [L, 3, H, W], alphas [L, 1, H, W], c [L] float64 -> [3, H, W]."""
    n_layers, _, h, w = images.shape
    delta = 1 / c - d_f
    delta = torch.where(delta.abs() < FOCUS_SNAP, torch.zeros_like(delta), delta)
    # shift of every layer under every lens sample, in pixels: [L, S, 2] (x, y)
    shifts = (lens * K)[None] * delta[:, None, None]
    radius = float(shifts.abs().max())
    if cells_per_side is None:
        # with at most one moving layer compositing is exact; otherwise even sub-pixel shifts of two sharp layers
        # gain from splitting the lens
        moving = int((delta != 0).sum()) if K > 0 else 0
        cells_per_side = 1 if moving < 2 else max(2, math.ceil(radius / CELL_RADIUS_PX))
    cells = lens_cells(lens, cells_per_side)

    # MPIB's per-sample thresholds, applied per pixel: contribution alpha skips < 0.01; transmittance stops > 0.99
    alpha_c = torch.where(alphas >= ALPHA_SKIP, alphas, torch.zeros_like(alphas))
    alpha_t = torch.where(alpha_c > ALPHA_STOP, torch.ones_like(alpha_c), alpha_c)
    # per layer channels: alpha, alpha*rgb [4, H, W], plus the transmittance alpha where it differs from alpha
    # (some alpha in (0.99, 1)); the last layer's transmittance is never used
    layers = []
    for li in range(n_layers):
        data = torch.cat([alpha_c[li], alpha_c[li] * images[li]])
        if li + 1 < n_layers and not torch.equal(alpha_t[li], alpha_c[li]):
            data = torch.cat([data, alpha_t[li]])
        layers.append(_LayerBlur(data, shifts[li], h, w))

    num = images.new_zeros(4, h, w)
    trans = images.new_empty(h, w)
    for idx in cells:
        trans.fill_(1)
        for li, layer in enumerate(layers):
            out = layer.blur(idx)
            if out is None:
                continue
            blurred, (y0, y1, x0, x1) = out  # [4 or 5, y1-y0, x1-x0]
            t = trans[y0:y1, x0:x1]
            num[:, y0:y1, x0:x1].addcmul_(blurred[:4], t)
            if li + 1 < n_layers:
                # transmittance is a product of per-sample means over the cell
                t.mul_(1 - blurred[-1 if len(blurred) == 5 else 0] / len(idx))
    # pixels no ray reaches are black, as in raytrace; the floor sits above the FFTs' round-off
    reached = num[0] > 1e-5 * len(lens)
    return torch.where(reached, num[1:] / num[0].clamp_min(1e-12), torch.zeros_like(num[1:]))


class _LayerBlur:
    """Sums of one layer's bilinear samples over groups of lens samples, by FFT correlation on the layer's box.

    data [C, H, W] (zero where alpha is zero), shifts float64 [S, 2] (x, y) in pixels.

    A bilinear sample at hit p reads the corners p and p + 1, but only if p itself lies in the image; the clamped
    right/bottom corner and that rule only matter for a layer that touches the image border. Such a layer is
    correlated corner by corner (four kernels, exact); any other layer with one kernel holding all four corner
    weights, which is the same sum.
    """

    def __init__(self, data: Tensor, shifts: Tensor, h: int, w: int):
        self.shifts = shifts
        support = data[0] > 0
        rows = torch.nonzero(support.any(1)).flatten()
        cols = torch.nonzero(support.any(0)).flatten()
        self.empty = len(rows) == 0
        if self.empty:
            return
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
        self.still = bool((shifts == 0).all())
        if self.still:
            self.box = (r0, r1 + 1, c0, c1 + 1)
            self.data = data[:, r0 : r1 + 1, c0 : c1 + 1]
            return
        self.per_corner = r0 == 0 or c0 == 0 or r1 == h - 1 or c1 == w - 1
        floor = shifts.floor().long()
        (mx_lo, my_lo), (mx_hi, my_hi) = floor.amin(0).tolist(), floor.amax(0).tolist()
        if self.per_corner:
            # source box of hits p: p may sit one row/column before the support (its p + 1 corner is inside)
            sy0, sy1, sx0, sx1 = max(0, r0 - 1), r1 + 1, max(0, c0 - 1), c1 + 1
        else:
            # kernel offsets m + corner (0 or 1) reach one further
            sy0, sy1, sx0, sx1 = r0, r1 + 1, c0, c1 + 1
            mx_hi, my_hi = mx_hi + 1, my_hi + 1
        # output pixels y with y + offset inside the source box, for some kernel offset
        oy0, oy1 = max(0, sy0 - my_hi), min(h, sy1 - my_lo)
        ox0, ox1 = max(0, sx0 - mx_hi), min(w, sx1 - mx_lo)
        self.box = (oy0, oy1, ox0, ox1)
        self.offset = (oy0 - sy0, ox0 - sx0)
        self.n1 = _fast_size(sy1 - sy0 + my_hi - my_lo + 1)
        self.n2 = _fast_size(sx1 - sx0 + mx_hi - mx_lo + 1)
        if self.per_corner:
            # corner images restricted to the source box: [4, C, sy1-sy0, sx1-sx0]
            source = corner_images(data)[..., sy0:sy1, sx0:sx1]
        else:
            source = data[:, sy0:sy1, sx0:sx1]
        self.spec = torch.fft.rfft2(source, s=(self.n1, self.n2))
        self.kernel = torch.zeros(4 if self.per_corner else 1, self.n1 * self.n2, dtype=data.dtype, device=data.device)

    def blur(self, idx: Tensor):
        """Sum over lens samples ``idx`` of the layer sampled at pixel + shift: ([C, h', w'], output box) or None."""
        if self.empty:
            return None
        if self.still:
            return self.data * len(idx), self.box
        shifts = self.shifts[idx]
        fl = shifts.floor()
        frac = (shifts - fl).to(self.kernel.dtype)
        fx, fy = frac[:, 0], frac[:, 1]
        # bilinear weights of corners (0,0), (1,0), (0,1), (1,1): [4, s]
        weights = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
        my, mx = fl[:, 1].long() + self.offset[0], fl[:, 0].long() + self.offset[1]
        # correlation out[y'] = sum_n k[n] Q[y' + n]: place k[n] at -n (mod size) and convolve
        self.kernel.zero_()
        if self.per_corner:
            self.kernel.index_add_(1, ((-my) % self.n1) * self.n2 + (-mx) % self.n2, weights)
            kspec = torch.fft.rfft2(self.kernel.view(4, self.n1, self.n2))
            # sum over corners of [C, n1, n2//2+1] spectra times their kernels' spectra
            prod = self.spec[0] * kspec[0]
            for corner in range(1, 4):
                prod.addcmul_(self.spec[corner], kspec[corner])
        else:
            for corner, (ox, oy) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
                flat = ((-(my + oy)) % self.n1) * self.n2 + (-(mx + ox)) % self.n2
                self.kernel[0].index_add_(0, flat, weights[corner])
            prod = self.spec * torch.fft.rfft2(self.kernel.view(1, self.n1, self.n2))
        oy0, oy1, ox0, ox1 = self.box
        return torch.fft.irfft2(prod, s=(self.n1, self.n2))[:, : oy1 - oy0, : ox1 - ox0], self.box
