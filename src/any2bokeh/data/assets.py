"""Foreground mattes and background images that synthetic scenes are built from.

Two kinds of source, both returning float32 tensors in [0, 1] at the asset's native resolution
(optionally shrunk so that the longer side is at most ``max_size``):

- a ``ForegroundSource`` is a list of RGBA clips. ``load(index, frame_ids)`` gives
  ``rgb [T, 3, h, w]`` and ``alpha [T, 1, h, w]``. An image matte is a clip of one frame.
- a ``BackgroundSource`` is a list of images. ``load(index)`` gives ``[3, h, w]``.

Frame ids past the end of a clip are reflected back into it (ping-pong: 0, 1, ..., n-1, n-2, ...,
1, 0, 1, ...), so a clip can be read for any number of frames and still moves smoothly.

Anything wrong with the files on disk raises ``AssetError`` naming the path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from any2bokeh.io import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    MediaError,
    VideoReader,
    is_visible,
    list_files,
    list_frames,
    read_image,
    uint8_to_float,
)

# An asset folder or file that cannot be used (missing, empty, mismatched or undecodable) raises the
# media error of any2bokeh.io, which does the reading, under the name the data package uses.
AssetError = MediaError


def reflect_frame_ids(frame_ids: Sequence[int], num_frames: int) -> list[int]:
    """Map any integer frame ids into [0, num_frames) by ping-pong reflection."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if num_frames == 1:
        return [0 for _ in frame_ids]
    period = 2 * (num_frames - 1)
    mapped = []
    for frame_id in frame_ids:
        phase = int(frame_id) % period
        mapped.append(phase if phase < num_frames else period - phase)
    return mapped


def shrink_to_max_size(images: torch.Tensor, max_size: int | None) -> torch.Tensor:
    """Downscale [..., C, h, w] (antialiased) so that max(h, w) <= max_size; never upscales."""
    height, width = images.shape[-2:]
    if max_size is None or max(height, width) <= max_size:
        return images
    scale = max_size / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    # images: [..., C, h, w] -> [N, C, h, w]
    flat = images.reshape(-1, *images.shape[-3:])
    flat = F.interpolate(flat, size=size, mode="bilinear", antialias=True, align_corners=False)
    return flat.reshape(*images.shape[:-2], *size).clamp_(0.0, 1.0)


def _require_folder(folder: str | Path, what: str) -> Path:
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise AssetError(f"{what} folder does not exist: {folder}")
    if not folder.is_dir():
        raise AssetError(f"{what} path is not a folder: {folder}")
    return folder


def _describe_mismatch(names_a: set[str], names_b: set[str], folder_a: Path, folder_b: Path) -> str:
    only_a = sorted(names_a - names_b)
    only_b = sorted(names_b - names_a)
    parts = []
    if only_a:
        parts.append(f"{len(only_a)} only in {folder_a} (e.g. {only_a[:3]})")
    if only_b:
        parts.append(f"{len(only_b)} only in {folder_b} (e.g. {only_b[:3]})")
    return "; ".join(parts)


class ForegroundSource(ABC):
    """A list of RGBA clips. Subclasses implement ``__len__``, ``num_frames`` and ``_load``."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def num_frames(self, index: int) -> int:
        """Number of frames stored for clip ``index`` (1 for an image matte)."""

    @abstractmethod
    def _load(self, index: int, frame_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Read frames whose ids already lie in [0, num_frames(index))."""

    def _check_index(self, index: int) -> int:
        if not 0 <= index < len(self):
            raise IndexError(f"{type(self).__name__} index {index} out of range for {len(self)} clips")
        return int(index)

    def load(self, index: int, frame_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Read frames of clip ``index``.

        Args:
            index: clip number in [0, len(self)).
            frame_ids: any integers; ids outside the clip are reflected into it (see the module doc).

        Returns:
            rgb: float32 [T, 3, h, w] in [0, 1], T = len(frame_ids), native resolution.
            alpha: float32 [T, 1, h, w] in [0, 1].
        """
        index = self._check_index(index)
        if len(frame_ids) == 0:
            raise ValueError("frame_ids is empty")
        return self._load(index, reflect_frame_ids(frame_ids, self.num_frames(index)))


class BackgroundSource(ABC):
    """A list of background images."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def _load(self, index: int) -> torch.Tensor: ...

    def load(self, index: int) -> torch.Tensor:
        """Image ``index`` as float32 [3, h, w] in [0, 1]."""
        if not 0 <= index < len(self):
            raise IndexError(f"{type(self).__name__} index {index} out of range for {len(self)} images")
        return self._load(int(index))


class VideoMatteForegrounds(ForegroundSource):
    """Video mattes in VideoMatte240K layout.

    Either ``root/fgr/NAME.mp4`` with ``root/pha/NAME.mp4`` (decoded by any2bokeh.io; only the
    requested frames are read), or frame folders ``root/fgr/NAME/*.jpg|png`` with
    ``root/pha/NAME/*`` (frames in frame-number order: ``frame_2`` before ``frame_10``). Both
    layouts may be mixed, clip by clip. Alpha is read from the first channel of the ``pha`` frames.

    Names must match between ``fgr`` and ``pha`` (checked here). Frame counts and frame sizes are
    checked the first time a clip is used, so that opening a large set stays quick.
    """

    def __init__(self, root: str | Path, max_size: int | None = None):
        self.root = _require_folder(root, "video matte root")
        self.max_size = max_size
        fgr = _require_folder(self.root / "fgr", "foreground (fgr)")
        pha = _require_folder(self.root / "pha", "alpha (pha)")
        fgr_entries, pha_entries = self._entries(fgr), self._entries(pha)
        if not fgr_entries:
            raise AssetError(f"no clips (video files or frame folders) in {fgr}")
        if fgr_entries.keys() != pha_entries.keys():
            mismatch = _describe_mismatch(set(fgr_entries), set(pha_entries), fgr, pha)
            raise AssetError(f"foreground and alpha clips do not match: {mismatch}")
        self.names = sorted(fgr_entries)
        self.clips = [(fgr_entries[name], pha_entries[name]) for name in self.names]
        self._num_frames: dict[int, int] = {}

    @staticmethod
    def _entries(folder: Path) -> dict[str, Path]:
        entries = {}
        for path in sorted(folder.iterdir()):
            if is_visible(path) and (path.is_dir() or path.suffix.lower() in VIDEO_EXTENSIONS):
                name = path.name if path.is_dir() else path.stem
                if name in entries:
                    raise AssetError(f"two clips named {name!r} in {folder}: {entries[name]} and {path}")
                entries[name] = path
        return entries

    def __len__(self) -> int:
        return len(self.clips)

    def num_frames(self, index: int) -> int:
        index = self._check_index(index)
        if index not in self._num_frames:
            fgr, pha = self.clips[index]
            counts = (self._count_frames(fgr), self._count_frames(pha))
            if counts[0] != counts[1]:
                raise AssetError(f"frame counts differ: {fgr} has {counts[0]} frames, {pha} has {counts[1]}")
            if counts[0] == 0:
                raise AssetError(f"clip has no frames: {fgr}")
            self._num_frames[index] = counts[0]
        return self._num_frames[index]

    @staticmethod
    def _count_frames(path: Path) -> int:
        if path.is_dir():
            return len(list_frames(path))
        return len(VideoReader(path))

    def _load(self, index: int, frame_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        fgr, pha = self.clips[index]
        rgb = self._read_frames(fgr, frame_ids, "RGB")
        alpha = self._read_frames(pha, frame_ids, "L")
        if rgb.shape[-2:] != alpha.shape[-2:]:
            raise AssetError(
                f"frame sizes differ: {fgr} is {tuple(rgb.shape[-2:])}, {pha} is {tuple(alpha.shape[-2:])}"
            )
        return rgb, alpha

    def _read_frames(self, path: Path, frame_ids: list[int], mode: str) -> torch.Tensor:
        """Frames of a video file or frame folder as float32 [T, C, h, w], C = 3 (RGB) or 1 (L)."""
        if path.is_dir():
            files = list_frames(path)
            # No JPEG draft here: fgr and pha must shrink to exactly the same size.
            frames = [read_image(files[i], mode, None) for i in frame_ids]
            sizes = {tuple(frame.shape[-2:]) for frame in frames}
            if len(sizes) > 1:
                raise AssetError(f"frames of different sizes {sorted(sizes)} in {path}")
            return shrink_to_max_size(torch.stack(frames), self.max_size)
        unique = sorted(set(frame_ids))
        frames = VideoReader(path).get_frames(unique)  # [U, h, w, 3] uint8
        frames = frames[[unique.index(i) for i in frame_ids]]
        if mode == "L":
            frames = frames[..., :1]
        return shrink_to_max_size(uint8_to_float(frames), self.max_size)


class ImageMatteForegrounds(ForegroundSource):
    """Image mattes, e.g. AM-2k's ``original/`` + ``mask/``: files are paired by stem.

    Each matte is a clip of one frame; every frame id reads that frame.
    """

    def __init__(self, image_dir: str | Path, alpha_dir: str | Path, max_size: int | None = None):
        self.image_dir = _require_folder(image_dir, "matte image")
        self.alpha_dir = _require_folder(alpha_dir, "matte alpha")
        self.max_size = max_size
        images = {p.stem: p for p in list_files(self.image_dir, IMAGE_EXTENSIONS)}
        alphas = {p.stem: p for p in list_files(self.alpha_dir, IMAGE_EXTENSIONS)}
        if not images:
            raise AssetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {self.image_dir}")
        if images.keys() != alphas.keys():
            mismatch = _describe_mismatch(set(images), set(alphas), self.image_dir, self.alpha_dir)
            raise AssetError(f"matte images and alphas do not match: {mismatch}")
        self.names = sorted(images)
        self.pairs = [(images[name], alphas[name]) for name in self.names]

    def __len__(self) -> int:
        return len(self.pairs)

    def num_frames(self, index: int) -> int:
        self._check_index(index)
        return 1

    def _load(self, index: int, frame_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, alpha_path = self.pairs[index]
        rgb = read_image(image_path, "RGB", None)
        alpha = read_image(alpha_path, "L", None)
        if rgb.shape[-2:] != alpha.shape[-2:]:
            raise AssetError(
                f"image and alpha sizes differ: {image_path} is {tuple(rgb.shape[-2:])}, "
                f"{alpha_path} is {tuple(alpha.shape[-2:])}"
            )
        # Shrink after the size check, so that it compares the files' own sizes.
        rgb, alpha = shrink_to_max_size(rgb, self.max_size), shrink_to_max_size(alpha, self.max_size)
        count = len(frame_ids)
        # [C, h, w] -> [T, C, h, w] (views; the frames are all the same)
        return rgb.expand(count, -1, -1, -1), alpha.expand(count, -1, -1, -1)


class ImageBackgrounds(BackgroundSource):
    """A folder of background images (searched recursively, e.g. BG-20k's train/ and testval/)."""

    def __init__(self, root: str | Path, max_size: int | None = None, recursive: bool = True):
        self.root = _require_folder(root, "background")
        self.max_size = max_size
        self.paths = list_files(self.root, IMAGE_EXTENSIONS, recursive=recursive)
        if not self.paths:
            raise AssetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {self.root}")

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, index: int) -> torch.Tensor:
        return shrink_to_max_size(read_image(self.paths[index], "RGB", self.max_size), self.max_size)
