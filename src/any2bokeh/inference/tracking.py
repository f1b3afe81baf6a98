"""Track the subject under a point through a video, with no learned weights.

The subject is whatever the user points at: the region of the disparity map that holds together
around the point (a flood fill within a disparity band, so it stops at the depth edges where a
subject meets what lies behind it). The paper's d_f is the subject's mean disparity on each frame
(§3.1), so the tracker has to find the subject again on every frame:

1. on the chosen frame, grow the region from the point;
2. carry the region to the next frame with dense optical flow (OpenCV's DIS flow);
3. intersect the carried region with the subject's disparity band on the new frame and grow it
   again inside that band, close to the carried region, so flow errors do not pile up;
4. repeat forwards to the last frame and backwards to the first.

A frame where too little of the region is left is marked lost (an empty mask); the region is
still carried through it by the flow, so the subject is found again when it reappears.
Tracking runs at a working size (`max_size` on the long side) for speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

_DIS_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}


@dataclass(frozen=True)
class TrackerConfig:
    """Options of `track_subject`.

    tolerance: half-width of the subject's disparity band, in normalized disparity.
    min_pixels: a region smaller than this (at the working size) counts as lost.
    max_area: the region grown from the point may cover at most this fraction of the frame; a
        larger one is shrunk by halving the tolerance.
    search: how far (pixels at the working size) the region may grow beyond the carried one,
        on top of the subject's own motion on that frame.
    max_size: long side of the working size (frames larger than this are downscaled).
    flow_preset: DIS preset, "ultrafast", "fast" or "medium".
    """

    tolerance: float = 0.05
    min_pixels: int = 9
    max_area: float = 0.6
    search: int = 4
    max_size: int = 512
    flow_preset: str = "medium"

    def __post_init__(self) -> None:
        if not 0 < self.tolerance <= 1:
            raise ValueError(f"tolerance must be in (0, 1], got {self.tolerance}")
        if self.min_pixels < 1 or self.search < 0 or self.max_size < 8:
            raise ValueError(f"need min_pixels >= 1, search >= 0, max_size >= 8; got {self}")
        if not 0 < self.max_area <= 1:
            raise ValueError(f"max_area must be in (0, 1], got {self.max_area}")
        if self.flow_preset not in _DIS_PRESETS:
            raise ValueError(f"flow_preset must be one of {sorted(_DIS_PRESETS)}, got {self.flow_preset!r}")


@dataclass
class Track:
    """masks: [T, h, w] bool at the working size (empty where lost); disparity: [T, h, w] float32
    at the same size; found: [T] bool."""

    masks: torch.Tensor
    disparity: torch.Tensor
    found: torch.Tensor


def working_size(height: int, width: int, max_size: int) -> tuple[int, int]:
    scale = min(1.0, max_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[T, C, H, W] float -> [T, C, h, w], area-averaged when shrinking."""
    if tuple(images.shape[-2:]) == size:
        return images
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)


def _grey_uint8(frames: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """[T, 3, H, W] in [0, 1] (float) or [0, 255] (uint8) -> [T, h, w] uint8 luma."""
    frames = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
    luma = (frames * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return (_resize(luma, size)[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _components_touching(band: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The connected components (8-neighbourhood) of `band` that contain a pixel of `seeds`."""
    count, labels = cv2.connectedComponents(band.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, dtype=bool)
    keep[np.unique(labels[seeds & band])] = True
    keep[0] = False
    return keep[labels]


def grow_from_point(disparity: np.ndarray, row: int, col: int, config: TrackerConfig) -> np.ndarray:
    """The connected region around (row, col) whose disparity lies within ±tolerance of the
    point's, shrunk (halving the tolerance) until it covers at most `max_area` of the frame."""
    seed = np.zeros_like(disparity, dtype=bool)
    seed[row, col] = True
    tolerance = config.tolerance
    while True:
        band = np.abs(disparity - disparity[row, col]) <= tolerance
        region = _components_touching(band, seed)
        if region.mean() <= config.max_area or tolerance < 1e-4:
            return region
        tolerance /= 2


def _carry(mask: np.ndarray, flow_to_source: np.ndarray) -> np.ndarray:
    """Move `mask` along the flow: flow_to_source[y, x] is where pixel (x, y) of the new frame
    came from in the frame that holds `mask`."""
    height, width = mask.shape
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    moved = cv2.remap(
        mask.astype(np.float32),
        grid_x + flow_to_source[..., 0],
        grid_y + flow_to_source[..., 1],
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return moved >= 0.5


def _refine(carried: np.ndarray, disparity: np.ndarray, centre: float, reach: int, config: TrackerConfig):
    """The subject on a new frame, and its disparity (the band's centre).

    Only carried pixels near the subject's last disparity count, so a nearer object that
    passes in front of the subject does not take its place; their median (which ignores the
    few background pixels the flow drags along an edge) is the new centre. The region is the
    band around it, grown from the carried pixels but no further than `reach` pixels.
    """
    near = carried & (np.abs(disparity - centre) <= 2 * config.tolerance)
    if near.sum() < config.min_pixels:
        return np.zeros_like(carried), centre
    centre = float(np.median(disparity[near]))
    band = np.abs(disparity - centre) <= config.tolerance
    if reach:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1,) * 2)
        band &= cv2.dilate(carried.astype(np.uint8), kernel).astype(bool)
    return _components_touching(band, near), centre


def track_subject(
    frames: torch.Tensor,
    disparity: torch.Tensor,
    point: tuple[float, float],
    frame: int = 0,
    config: TrackerConfig | None = None,
) -> Track:
    """Masks of the subject under `point` on every frame.

    Args:
        frames: [T, 3, H, W] float in [0, 1] or uint8.
        disparity: [T, H, W] or [T, 1, H, W], normalized (1 = nearest); may differ in size from
            the frames (both go to one working size).
        point: (x, y) in [0, 1] image coordinates (x to the right, y down) on frame `frame`.
    """
    config = config or TrackerConfig()
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be [T, 3, H, W], got shape {tuple(frames.shape)}")
    if disparity.dim() == 4 and disparity.shape[1] == 1:
        disparity = disparity[:, 0]  # [T, 1, H, W] -> [T, H, W]
    if disparity.dim() != 3 or disparity.shape[0] != frames.shape[0]:
        raise ValueError(
            f"disparity must be [T, H, W] with T = {frames.shape[0]} frames, got shape {tuple(disparity.shape)}"
        )
    num_frames = frames.shape[0]
    if isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame < num_frames:
        raise ValueError(f"focus point frame must be an int in [0, {num_frames - 1}], got {frame!r}")
    x, y = _check_point(point)
    size = working_size(*frames.shape[-2:], config.max_size)
    grey = _grey_uint8(frames, size)
    disp = _resize(disparity[:, None].float(), size)[:, 0].contiguous()  # [T, h, w]
    disp_np = disp.numpy()
    row, col = min(int(y * size[0]), size[0] - 1), min(int(x * size[1]), size[1] - 1)
    masks = np.zeros((num_frames, *size), dtype=bool)
    masks[frame] = grow_from_point(disp_np[frame], row, col, config)
    if masks[frame].sum() < config.min_pixels:
        raise ValueError(
            f"focus point {list(point)} on frame {frame} falls on no subject: only {int(masks[frame].sum())} pixels "
            f"around it lie within ±{config.tolerance} of its disparity {disp_np[frame, row, col]:.3f}"
        )
    flow = cv2.DISOpticalFlow_create(_DIS_PRESETS[config.flow_preset])
    for step in (1, -1):
        carried, centre = masks[frame], float(np.median(disp_np[frame][masks[frame]]))
        for t in range(frame + step, num_frames if step > 0 else -1, step):
            # Flow from the new frame back to the previous one: where each new pixel came from.
            to_source = flow.calc(grey[t], grey[t - step], None)
            carried = _carry(carried, to_source)
            # Flow on a small subject lags behind its true motion, so the region may grow back
            # by `search` pixels plus as far as the subject moved.
            speed = np.linalg.norm(to_source[carried], axis=-1) if carried.any() else np.zeros(1)
            reach = config.search + int(np.ceil(np.median(speed)))
            masks[t], centre = _refine(carried, disp_np[t], centre, reach, config)
            if masks[t].sum() >= config.min_pixels:
                carried = masks[t]
            else:
                masks[t] = False
    found = torch.from_numpy(masks.reshape(num_frames, -1).sum(1) >= config.min_pixels)
    return Track(torch.from_numpy(masks), disp, found)


def _check_point(point) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in point)
    except (TypeError, ValueError):
        raise ValueError(f"focus point must be [x, y] in [0, 1] image coordinates, got {point!r}") from None
    if not (0 <= x <= 1 and 0 <= y <= 1):
        raise ValueError(f"focus point {list(point)} lies outside the frame: x and y must be in [0, 1]")
    return x, y
