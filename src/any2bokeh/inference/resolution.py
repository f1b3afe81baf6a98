"""Working size, K at any width, and the input's native detail in focus.

A renderer works at a *working size*: the paper trains and tests at 1024x576 (§4), so a video of any
size is resized to about that many pixels, its aspect kept, and the result is brought back to the
input's own size. Three rules keep the result faithful to the input:

- **K is in the paper's unit**: pixels of blur radius per unit of normalised disparity at 1024 px
  width (eq. 1, r = K |d - d_f|, with the paper's frames 1024 wide). A frame `width` pixels wide
  blurs by `K * width / 1024` pixels per unit, so a 4K render looks like its 1024-wide preview and a
  working size other than 1024 keeps the look too.
- **Working size**: the area of `area` (1024 x 576 by default), the input's aspect, each side a
  multiple of the renderer's `multiple` (64 for SVD: VAE and UNet downsampling).
- **Native detail in focus**: a render at the working size carries no detail finer than the working
  size can hold, and upsampling it back gives a soft frame. Where the blur radius at native size is
  below about half a pixel, the output should be the input itself. So the detail the round trip
  (native -> working -> native) loses, `native - up(down(native))`, is added back to the upsampled
  render with a weight that is 1 where r <= `sharp_radius` (0.5 px) and falls linearly to 0 at
  `sharp_radius + fade` (1.5 px): detail finer than the blur is kept only where the blur is finer
  still. Where a renderer leaves the in-focus pixels unchanged (every renderer should: r = 0 there),
  the output equals the input exactly.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

# The paper's frames (§4): K is defined at this width; the default working size has this area.
PAPER_WIDTH = 1024
PAPER_HEIGHT = 576
PAPER_AREA = PAPER_WIDTH * PAPER_HEIGHT


def working_size(
    height: int, width: int, area: int = PAPER_AREA, multiple: int = 1, upscale: bool = True
) -> tuple[int, int]:
    """(h, w) of about `area` pixels with the aspect of (height, width), each a multiple of `multiple`.

    upscale=False never makes a side larger than the input's (smaller inputs keep their size, rounded
    to the multiple). Each side is at least `multiple`.
    """
    if height < 1 or width < 1 or area < 1 or multiple < 1:
        raise ValueError(
            f"working_size needs positive sizes, got height={height}, width={width}, area={area}, multiple={multiple}"
        )
    scale = math.sqrt(area / (height * width))
    if not upscale:
        scale = min(scale, 1.0)
    h = max(multiple, round(height * scale / multiple) * multiple)
    w = max(multiple, round(width * scale / multiple) * multiple)
    return h, w


def k_pixels(k: Tensor | float, width: int) -> Tensor | float:
    """Blur radius per unit of normalised disparity, in pixels of a frame `width` wide, for K in the paper's unit."""
    return k * (width / PAPER_WIDTH)


def resize(frames: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize [N, C, H, W] float frames to `size` (h, w): antialiased bilinear down, bicubic up."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    shrink = size[0] * size[1] < frames.shape[-2] * frames.shape[-1]
    mode = "bilinear" if shrink else "bicubic"
    return F.interpolate(frames, size=size, mode=mode, antialias=shrink, align_corners=False)


def detail_weight(radius: Tensor, sharp_radius: float = 0.5, fade: float = 1.0) -> Tensor:
    """1 where the blur radius (native pixels) is <= sharp_radius, falling linearly to 0 at sharp_radius + fade."""
    if sharp_radius < 0 or fade <= 0:
        raise ValueError(f"need sharp_radius >= 0 and fade > 0, got {sharp_radius} and {fade}")
    return ((sharp_radius + fade - radius) / fade).clamp(0, 1)


def to_native(
    native: Tensor,
    rendered: Tensor,
    radius: Tensor,
    sharp_radius: float = 0.5,
    fade: float = 1.0,
) -> Tensor:
    """A working-size render brought to the input's size, with the input's own detail where it is in focus.

    Args:
        native: the input frames [N, 3, H, W], float in [0, 1].
        rendered: the render of `resize(native, (h, w))`, [N, 3, h, w], float in [0, 1].
        radius: the blur radius at native size, in native pixels: [N, 1, H, W] (K |d - d_f| with K in
            native pixels, see `k_pixels`).
    Returns:
        [N, 3, H, W] float in [0, 1].
    """
    if native.ndim != 4 or rendered.ndim != 4 or native.shape[:2] != rendered.shape[:2]:
        raise ValueError(
            f"native and rendered must be [N, 3, H, W] and [N, 3, h, w], got {tuple(native.shape)} and "
            f"{tuple(rendered.shape)}"
        )
    if radius.shape != (native.shape[0], 1, *native.shape[-2:]):
        raise ValueError(
            f"radius must be [N, 1, H, W] = {(native.shape[0], 1, *native.shape[-2:])}, got {tuple(radius.shape)}"
        )
    size = tuple(native.shape[-2:])
    working = tuple(rendered.shape[-2:])
    if working == size:
        return rendered
    # what the working size can hold of the input, and the finer detail it cannot
    round_trip = resize(resize(native, working), size)
    detail = native - round_trip
    return (resize(rendered, size) + detail_weight(radius, sharp_radius, fade) * detail).clamp(0, 1)
