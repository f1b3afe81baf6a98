"""The conditioning signals of §3.1: focal-plane-adapted MPI regions, the V_D map and the K embedding.

Shapes follow the data batches: `disparity` is [..., H, W] (or [..., 1, H, W]) in [0, 1] with 1 nearest,
and `disp_focus` holds one focal disparity per frame, [...] (a prefix of the disparity's leading dims,
or a float). Everything is vectorised over the leading dims and free of `.item()`, so it runs on any
device and under FakeTensorMode.
"""

from __future__ import annotations

import math

import torch

# d_f = 0 would give the exponent 1 / 0; the floor sends every inner threshold to 0 instead.
from any2bokeh.data.disparity import MIN_DISP_FOCUS

#: channels of SVD's VAE latents; the UNet takes the all-in-focus and the V_D latents, 2 x 4 channels
LATENT_CHANNELS = 4
FOURIER_FREQUENCIES = 16
FOURIER_DIM = 2 * FOURIER_FREQUENCIES
#: E(K)'s encodings and their (lowest, highest) frequency: rad per pixel of K ("raw" and the release's two) or
#: rad per octave of 1 + K ("log"); see `fourier_k`
K_FREQUENCIES = {"raw": (1.0, 100.0), "log": (0.25, 8.0), "release": (1.0, 100.0), "interleaved": (1.0, 100.0)}
K_ENCODINGS = tuple(K_FREQUENCIES)


def _focus_like(disparity: torch.Tensor, disp_focus: torch.Tensor | float, name: str) -> torch.Tensor:
    """`disp_focus` as a tensor broadcastable against `disparity` [..., H, W] (trailing dims of size 1)."""
    if disparity.ndim < 2:
        raise ValueError(f"{name}: disparity must be [..., H, W], got shape {tuple(disparity.shape)}")
    disp_focus = torch.as_tensor(disp_focus, device=disparity.device)
    leading = disparity.shape[:-2]
    if disp_focus.ndim > len(leading) or tuple(leading[: disp_focus.ndim]) != tuple(disp_focus.shape):
        raise ValueError(
            f"{name}: disp_focus of shape {tuple(disp_focus.shape)} must match the leading dims of "
            f"disparity {tuple(disparity.shape)} (one focal disparity per frame)"
        )
    # disp_focus: [...] -> [..., 1, ..., 1], one trailing 1 per remaining disparity dim
    return disp_focus.reshape(disp_focus.shape + (1,) * (disparity.ndim - disp_focus.ndim))


def _compute_dtype(disparity: torch.Tensor) -> torch.dtype:
    return torch.float64 if disparity.dtype == torch.float64 else torch.float32


def vd_map(disparity: torch.Tensor, disp_focus: torch.Tensor | float) -> torch.Tensor:
    """The disparity difference V_D = |d - d_f| (eq. 1 without K), same shape as `disparity`.

    Args:
        disparity: float [..., H, W] in [0, 1].
        disp_focus: float or tensor [...] (a prefix of disparity's leading dims).
    """
    focus = _focus_like(disparity, disp_focus, "vd_map")
    return (disparity - focus.to(disparity.dtype)).abs()


def vd_image(disparity: torch.Tensor, disp_focus: torch.Tensor | float) -> torch.Tensor:
    """V_D as a 3-channel image in [-1, 1], ready for the VAE encoder like an RGB frame.

    Args:
        disparity: float [..., 1, H, W] in [0, 1] (a channel dim of size 1, as in the data batches).
        disp_focus: float or tensor [...] (e.g. [B, T] for disparity [B, T, 1, H, W]).

    Returns:
        [..., 3, H, W]: 2 * |d - d_f| - 1, the one channel repeated.
    """
    if disparity.ndim < 3 or disparity.shape[-3] != 1:
        raise ValueError(f"vd_image: disparity must be [..., 1, H, W], got shape {tuple(disparity.shape)}")
    image = 2.0 * vd_map(disparity, disp_focus) - 1.0
    # image: [..., 1, H, W] -> [..., 3, H, W]
    return image.expand(*image.shape[:-3], 3, *image.shape[-2:])


def mpi_thresholds(disp_focus: torch.Tensor | float, n_planes: int = 4, alpha: float = 1.0) -> torch.Tensor:
    """The focal-plane-adapted thresholds of eq. (2): h_i = (i / N) ** (1 / d_f**alpha), i = 0..N.

    Args:
        disp_focus: float or tensor [...]; values <= 0 are replaced by a tiny positive focus.
    Returns:
        float32 (float64 for a float64 input) [..., N + 1], h_0 = 0 and h_N = 1.
    """
    if n_planes < 1:
        raise ValueError(f"mpi_thresholds: n_planes must be >= 1, got {n_planes}")
    if not alpha > 0:
        raise ValueError(f"mpi_thresholds: alpha must be > 0, got {alpha}")
    disp_focus = torch.as_tensor(disp_focus)
    dtype = _compute_dtype(disp_focus)
    focus = disp_focus.to(dtype).clamp_min(MIN_DISP_FOCUS)
    steps = torch.linspace(0.0, 1.0, n_planes + 1, dtype=dtype, device=focus.device)
    exponent = 1.0 / focus**alpha
    # [N + 1] ** [..., 1] -> [..., N + 1]
    return steps ** exponent[..., None]


def mpi_regions(
    disparity: torch.Tensor,
    disp_focus: torch.Tensor | float,
    n_planes: int = 4,
    alpha: float = 1.0,
) -> torch.Tensor:
    """Assign every pixel to one of N focal-plane-adapted MPI regions (eq. 2-3).

    The region of a pixel is the number of inner thresholds h_1..h_{N-1} that |d - d_f| strictly
    exceeds, so it lies in 0..N-1 and region 0 holds the pixels nearest the focal plane. The MPI mask of
    level i is `regions <= i`.

    Args:
        disparity: float [..., H, W] in [0, 1].
        disp_focus: float or tensor [...] (a prefix of disparity's leading dims; [B, T] for [B, T, H, W]).
            d_f <= 0 is replaced by a tiny positive value.
        n_planes: N, the number of regions.
        alpha: the exponent on d_f (1 in training; the authors also used 1.5 at inference).

    Returns:
        int64 [..., H, W] in 0..N-1.
    """
    focus = _focus_like(disparity, disp_focus, "mpi_regions")
    dtype = _compute_dtype(disparity)
    # thresholds: [..., 1, .., 1] focus -> [..., 1, .., 1, N + 1]; keep h_1..h_{N-1}
    inner = mpi_thresholds(focus.to(device=disparity.device), n_planes, alpha)[..., 1:n_planes]
    difference = (disparity.to(dtype) - focus.to(dtype)).abs()
    # [..., H, W, 1] > [..., 1, 1, N - 1] -> count over the thresholds -> [..., H, W]
    return (difference[..., None] > inner).sum(dim=-1)


def fourier_k(k: torch.Tensor | float, encoding: str = "log") -> torch.Tensor:
    """Fourier embedding E(K) of the blur strength (eq. 4), 32 values.

    "raw": angles K * f for 16 frequencies f log-spaced from 1 to 100 rad per pixel, 16 sines then 16
    cosines. Every frequency turns at least once per 6.3 px of K, so no component is monotonic in K and
    K and 2K land on unrelated embeddings: a network trained on a few K values can tell them apart, but
    one trained on a range of K cannot follow K smoothly from it. "log" embeds u = log2(1 + K) (octaves
    of blur, 0 at K = 0) with frequencies log-spaced from 0.25 to 8 rad per octave: the slowest turns
    less than half a period between K = 0 and K = 127, so its cosine falls monotonically with K, and
    doubling K adds about 1 to u at any K, the same step in the embedding for a small or a large K.

    "release" is what the authors' released model computed: the raw angles, sine and cosine interleaved
    (sin f_0, cos f_0, sin f_1, ...), every step in float16 (frequencies, angles, sin and cos), so the
    angles are quantised (by up to 1.5 at K = 32). "interleaved" is the same layout in float32.

    Args:
        k: float or tensor [...], K in pixels per unit of disparity.
        encoding: one of `K_ENCODINGS`.
    Returns:
        float32 (float64 for a float64 input; float16 for "release") [..., 32].
    """
    if encoding not in K_ENCODINGS:
        raise ValueError(f"fourier_k: encoding must be one of {K_ENCODINGS}, got {encoding!r}")
    k = torch.as_tensor(k)
    dtype = _compute_dtype(k) if k.is_floating_point() else torch.float32
    if encoding == "release":
        dtype = torch.float16
    low, high = K_FREQUENCIES[encoding]
    if encoding in ("release", "interleaved"):
        # 100 ** linspace(0, 1, 16), computed in the embedding's dtype as the release does
        frequencies = high ** torch.linspace(0.0, 1.0, FOURIER_FREQUENCIES, dtype=dtype, device=k.device)
        # [..., 1] * [16] -> [..., 16, 2] (sin, cos) -> [..., 32]
        angles = k.to(dtype)[..., None] * frequencies
        return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)
    frequencies = torch.logspace(math.log10(low), math.log10(high), FOURIER_FREQUENCIES, dtype=dtype, device=k.device)
    k = k.to(dtype)
    position = k if encoding == "raw" else torch.log1p(k) / math.log(2.0)
    # [..., 1] * [16] -> [..., 16]
    angles = position[..., None] * frequencies
    return torch.cat([angles.sin(), angles.cos()], dim=-1)
