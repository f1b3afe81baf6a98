"""A synthetic clip for the focus tracker: a textured disc crossing a textured square."""

import math

import torch
import torch.nn.functional as F

HEIGHT, WIDTH, RADIUS = 96, 128, 14


def _texture(generator, channels, height, width, cells):
    """Smooth noise plus fine noise: something for the optical flow to hold on to."""
    coarse = F.interpolate(
        torch.rand(1, channels, cells, cells, generator=generator), size=(height, width), mode="bilinear"
    )
    return (0.5 * coarse + 0.5 * torch.rand(1, channels, height, width, generator=generator))[0]


def disc_clip(num_frames=24, seed=0):
    """A textured disc crossing a panning textured background, in front of a textured square.

    The disc (disparity 0.70 -> 0.85, nearer than everything) moves left to right on a sine
    path; the square (disparity 0.5) moves right to left, so the disc passes in front of it.
    The background pans 1 px per frame with disparity 0.15..0.35. Returns frames [T, 3, H, W],
    disparity [T, H, W], the disc's and the square's mean disparity [T] and their masks.
    """
    g = torch.Generator().manual_seed(seed)
    wide = WIDTH + num_frames
    background = _texture(g, 3, HEIGHT, wide, 8)
    background_disp = 0.15 + 0.2 * _texture(g, 1, HEIGHT, wide, 4)[0]
    disc_rgb, square_rgb = _texture(g, 3, 2 * RADIUS + 1, 2 * RADIUS + 1, 4), _texture(g, 3, 24, 24, 4)
    disc_relief = 0.01 * torch.rand(2 * RADIUS + 1, 2 * RADIUS + 1, generator=g)
    rows, cols = torch.meshgrid(torch.arange(HEIGHT).float(), torch.arange(WIDTH).float(), indexing="ij")
    frames, disparity, disc_truth, square_truth, disc_masks, square_masks = [], [], [], [], [], []
    for t in range(num_frames):
        s = t / (num_frames - 1)
        image = background[:, :, t : t + WIDTH].clone()
        disp = background_disp[:, t : t + WIDTH].clone()
        # The square: 24 px, moving right to left at mid height.
        top, left = 36, round(96 - 64 * s)
        square = (rows >= top) & (rows < top + 24) & (cols >= left) & (cols < left + 24)
        image[:, top : top + 24, left : left + 24] = square_rgb
        disp[square] = 0.5
        # The disc, textured in its own coordinates so the texture moves with it.
        cx, cy = 24 + s * (WIDTH - 48), HEIGHT / 2 + 15 * math.sin(2 * math.pi * s)
        disc = (cols - cx) ** 2 + (rows - cy) ** 2 <= RADIUS**2
        tex_rows = (rows - cy).round().long().clamp(-RADIUS, RADIUS) + RADIUS
        tex_cols = (cols - cx).round().long().clamp(-RADIUS, RADIUS) + RADIUS
        image = torch.where(disc, disc_rgb[:, tex_rows, tex_cols], image)
        disp = torch.where(disc, 0.7 + 0.15 * s + disc_relief[tex_rows, tex_cols], disp)
        square &= ~disc
        frames.append(image)
        disparity.append(disp)
        disc_truth.append(disp[disc].mean())
        square_truth.append(disp[square].mean())
        disc_masks.append(disc)
        square_masks.append(square)
    stack = torch.stack
    return (
        stack(frames),
        stack(disparity),
        stack(disc_truth),
        stack(square_truth),
        stack(disc_masks),
        stack(square_masks),
    )


def disc_centre(t, num_frames=24):
    """Where the disc of `disc_clip` is on frame t, as [x, y] in [0, 1]."""
    s = t / (num_frames - 1)
    return [(24 + s * (WIDTH - 48)) / WIDTH, (HEIGHT / 2 + 15 * math.sin(2 * math.pi * s)) / HEIGHT]
