"""CLIP's input from video frames: resized to the encoder's square, optionally normalised.

"bicubic" resizes with torch's antialiased bicubic filter. "gaussian" is what SVD's pipeline does to a
tensor input, and so what the authors' release ran: a separable Gaussian blur with sigma
max((s / size - 1) / 2, 0.001) per axis (s the input's extent), a kernel of int(max(4 sigma, 3)) taps made
odd, reflect padding, then bicubic interpolation with `align_corners=True`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

CLIP_RESIZES = ("bicubic", "gaussian")


def _gaussian_taps(extent: int, size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The normalised 1-D blur kernel for resizing `extent` pixels to `size`."""
    sigma = max((extent / size - 1.0) / 2.0, 0.001)
    taps = int(max(4.0 * sigma, 3.0))
    taps += 1 - taps % 2
    x = torch.arange(taps, dtype=dtype, device=device) - taps // 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def gaussian_resize(images: Tensor, size: int) -> Tensor:
    """images [N, C, H, W] -> [N, C, size, size]: the Gaussian blur, then bicubic with align_corners."""
    channels, (height, width) = images.shape[1], images.shape[-2:]
    blurred = images
    # width first, then height, each as a depthwise conv on reflect-padded input
    for axis, extent in ((3, width), (2, height)):
        kernel = _gaussian_taps(extent, size, images.dtype, images.device)
        pad = kernel.numel() // 2
        # [taps] -> [C, 1, 1, taps] (along the width) or [C, 1, taps, 1] (along the height)
        weight = (kernel.view(1, 1, 1, -1) if axis == 3 else kernel.view(1, 1, -1, 1)).expand(channels, 1, -1, -1)
        padding = (pad, pad, 0, 0) if axis == 3 else (0, 0, pad, pad)
        blurred = F.conv2d(F.pad(blurred, padding, mode="reflect"), weight, groups=channels)
    return F.interpolate(blurred, size=(size, size), mode="bicubic", align_corners=True)


def clip_pixels(
    frames: Tensor, size: int, resize: str, mean: Tensor | None = None, std: Tensor | None = None
) -> Tensor:
    """Frames [N, 3, H, W] in [-1, 1] -> CLIP pixels [N, 3, size, size] in float32.

    Resized in [-1, 1] by `resize` ("bicubic" or "gaussian"), mapped to [0, 1], then normalised with
    `mean` and `std` ([3, 1, 1]) when they are given.
    """
    if resize not in CLIP_RESIZES:
        raise ValueError(f"clip_resize must be one of {CLIP_RESIZES}, got {resize!r}")
    frames = frames.float()
    if resize == "gaussian":
        pixels = gaussian_resize(frames, size)
    else:
        pixels = F.interpolate(frames, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    pixels = (pixels + 1) / 2
    if mean is not None and std is not None:
        pixels = (pixels - mean) / std
    return pixels
