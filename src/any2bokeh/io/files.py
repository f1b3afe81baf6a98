"""Files and images: listing frame folders, reading images, writing PNG frames (atomically).

Anything wrong with a file on disk raises ``MediaError`` naming the path. See ``any2bokeh.io.video``
for the frame contracts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from any2bokeh.utils.atomic import atomic_path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


class MediaError(ValueError):
    """A media file or folder that cannot be used: missing, empty, mismatched or undecodable."""


# ---- files and folders ----


def is_visible(path: Path, root: Path | None = None) -> bool:
    """False for hidden entries (or entries in hidden folders below root), such as the macOS
    "._name.jpg" resource forks that archives often carry."""
    parts = path.relative_to(root).parts if root is not None else (path.name,)
    return not any(part.startswith(".") for part in parts)


def list_files(folder: Path, extensions: Sequence[str], recursive: bool = False) -> list[Path]:
    """Visible files of ``folder`` whose suffix is in ``extensions``, sorted by path."""
    pattern = "**/*" if recursive else "*"
    return sorted(
        p
        for p in Path(folder).glob(pattern)
        if p.is_file() and p.suffix.lower() in extensions and is_visible(p, folder)
    )


def frame_number_order(path: Path) -> tuple:
    """Sort key that reads digit runs as numbers, so that frame_2 comes before frame_10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name))


def list_frames(folder: Path) -> list[Path]:
    """The image files of a frame folder, in frame-number order (zero padding not needed)."""
    return sorted(list_files(Path(folder), IMAGE_EXTENSIONS), key=frame_number_order)


# ---- images ----


def uint8_to_float(array: np.ndarray) -> torch.Tensor:
    """uint8 [..., h, w, C] -> float32 [..., C, h, w] in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array)).movedim(-1, -3).float().div_(255.0)


def float_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """float [..., C, h, w] in [0, 1] (values outside are clipped) -> uint8 [..., h, w, C]."""
    return (frames.detach().float().clamp(0, 1) * 255).round_().to(torch.uint8).movedim(-3, -1).cpu().numpy()


def read_image_array(path: Path, mode: str | None = None) -> np.ndarray:
    """One image file as stored: uint8 [h, w] (grey) or [h, w, C], or a grey map of more bits.

    ``mode`` converts 8-bit images with PIL ("RGB", "L"). Grey images of more than 8 bits keep
    their values unless ``mode`` is "RGB", so that no precision is lost: 16-bit ones as uint16,
    32-bit integer or float ones (TIFF) as int32 or float32.
    """
    try:
        with Image.open(path) as image:
            if image.mode.startswith("I;16") and mode != "RGB":
                return np.array(image).astype(np.uint16)
            if image.mode in ("I", "F") and mode != "RGB":
                return np.array(image)
            return np.array(image if mode is None else image.convert(mode))
    except (OSError, ValueError, SyntaxError) as error:
        raise MediaError(f"cannot decode image {path}: {error}") from error


def read_image(path: Path, mode: str, max_size: int | None = None) -> torch.Tensor:
    """Read one image file as float32 [C, h, w] in [0, 1]; mode is PIL's "RGB" or "L".

    16-bit grey images (mattes, disparity) keep their full range: they are divided by 65535.
    ``max_size`` lets the JPEG decoder skip detail a later downscale to that size would discard.
    """
    try:
        with Image.open(path) as image:
            if max_size is not None and image.format == "JPEG":
                scale = max_size / max(image.size)
                if scale < 1:
                    image.draft(mode, (round(image.size[0] * scale), round(image.size[1] * scale)))
            if mode == "L" and image.mode.startswith("I;16"):
                return torch.from_numpy(np.array(image, dtype=np.float32) / 65535.0)[None]
            array = np.array(image.convert(mode))
    except (OSError, ValueError, SyntaxError) as error:
        raise MediaError(f"cannot decode image {path}: {error}") from error
    if array.ndim == 2:
        array = array[..., None]
    return uint8_to_float(array)


# ---- writing ----


def check_frames(frames, grey: bool = False) -> np.ndarray:
    """uint8 frames [T, H, W, 3] (or, with `grey`, also [T, H, W]) as a numpy array, or a ValueError."""
    frames = frames.cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    shape_ok = (frames.ndim == 4 and frames.shape[-1] == 3) or (grey and frames.ndim == 3)
    if frames.dtype != np.uint8 or not shape_ok or len(frames) == 0:
        expected = "[T, H, W, 3] or [T, H, W]" if grey else "[T, H, W, 3]"
        raise ValueError(f"expected uint8 frames {expected} with T >= 1, got {frames.dtype} {frames.shape}")
    return frames


def write_png_frames(folder: str | Path, frames) -> Path:
    """Write uint8 frames [T, H, W, 3] (or grey [T, H, W]) as folder/00000.png, 00001.png, ... (atomically, as a
    folder)."""
    frames = check_frames(frames, grey=True)
    folder = Path(folder)
    with atomic_path(folder) as temporary:
        temporary.mkdir()
        for index, frame in enumerate(frames):
            Image.fromarray(frame).save(temporary / f"{index:05d}.png")
    return folder
