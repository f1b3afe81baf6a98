"""Real videos in the DAVIS 2017 layout, for VEPI (Appendix A.4):

    <root>/JPEGImages/<resolution>/<sequence>/00000.jpg ...
    <root>/Annotations/<resolution>/<sequence>/00000.png ...   palette PNGs, one index per object

The focus follows the annotated object: d_f on each frame is its mean disparity there (frames
where it is hidden take d_f from their neighbours), and VEPI compares the edges of the input and
the render inside its mask. Disparity comes from files (a folder holding `<sequence>.npy`,
`.npz`, a PNG folder `<sequence>/` or a grey video `<sequence>.mp4`) or from a local Depth
Anything folder, through the same loaders as `predict.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from any2bokeh.data.disparity import subject_focus
from any2bokeh.evaluation.records import EvalVideo, Job
from any2bokeh.inference.disparity import (
    DepthNetwork,
    prepare_disparity,
    read_disparity_file,
)
from any2bokeh.inference.focus import fill_gaps, load_masks, smooth_curve
from any2bokeh.inference.resolution import PAPER_WIDTH
from any2bokeh.io import read_video

DISPARITY_SUFFIXES = (".npy", ".npz", ".mp4", ".mov", ".webm", "")


def davis_jobs(root: str | Path, resolution: str = "480p", sequences: list[str] | None = None) -> list[Job]:
    """One job per sequence (all folders under JPEGImages/<resolution>, or the named ones)."""
    images = Path(root) / "JPEGImages" / resolution
    if not images.is_dir():
        raise FileNotFoundError(f"no DAVIS frames at {images} (expected <root>/JPEGImages/{resolution}/<sequence>/)")
    found = sorted(path.name for path in images.iterdir() if path.is_dir() and not path.name.startswith("."))
    if sequences is not None:
        missing = [name for name in sequences if name not in found]
        if missing:
            raise FileNotFoundError(f"DAVIS sequences {missing} not found under {images}")
        found = [name for name in found if name in set(sequences)]
    if not found:
        raise FileNotFoundError(f"no sequence folders under {images}")
    return [Job("davis", "real", name, index) for index, name in enumerate(found)]


class DavisSet:
    """Loads DAVIS jobs as `EvalVideo`s with disparity, d_f on the object, K and the object's mask."""

    def __init__(
        self,
        root: str | Path,
        resolution: str = "480p",
        sequences: list[str] | None = None,
        num_frames: int | None = 25,
        object_id: int | None = 1,
        disparity: str | Path | None = None,
        depth_model: str | Path | None = None,
        k: float = 16.0,
        matte: bool = True,
    ):
        if disparity is None and depth_model is None:
            raise ValueError("DAVIS needs disparity: set davis.disparity (a folder of files) or davis.depth_model")
        if k < 0:
            raise ValueError(f"davis.k must be >= 0, got {k}")
        if num_frames is not None and num_frames < 1:
            raise ValueError(f"davis.num_frames must be >= 1 or null, got {num_frames}")
        self.root, self.resolution = Path(root), resolution
        self.num_frames, self.object_id, self.k = num_frames, object_id, float(k)
        self.matte = bool(matte)
        self.disparity_dir = None if disparity is None else Path(disparity)
        self.depth_model = depth_model
        self._depth = None

    def load(self, job: Job, device: torch.device | str = "cpu") -> EvalVideo:
        frames_dir = self.root / "JPEGImages" / self.resolution / job.video
        masks_dir = self.root / "Annotations" / self.resolution / job.video
        video = read_video(frames_dir)
        total, height, width = video.num_frames, *video.size
        count = total if self.num_frames is None else min(self.num_frames, total)
        # uint8 [T, H, W, 3] -> float [T, 3, H, W] in [0, 1]
        frames = torch.from_numpy(video.frames[:count]).permute(0, 3, 1, 2).float() / 255
        # DAVIS annotates every frame: [T, H, W] -> [T, 1, H, W] for the frames used
        masks = load_masks(masks_dir, total, (height, width), self.object_id)[:count, None]
        disparity = self._disparity(job.video, video.frames[:count], device)[:, None]  # [T, 1, H, W]
        what = f"DAVIS object {self.object_id} in {masks_dir}"
        disp_focus = smooth_curve(fill_gaps(subject_focus(disparity, masks), what)).clamp(0, 1)
        # K in pixels at this video's width (the test sets' convention)
        k = torch.full((count,), self.k * width / PAPER_WIDTH)
        return EvalVideo(frames=frames, disparity=disparity, disp_focus=disp_focus, k=k, mask=masks, matte=self.matte)

    def _disparity(self, sequence: str, frames: np.ndarray, device: torch.device | str) -> torch.Tensor:
        """[T, H, W] normalised over the frames used, from files or from the depth network."""
        if self.disparity_dir is None:
            if self._depth is None:
                self._depth = DepthNetwork(self.depth_model, device)
            return self._depth(frames)
        path = next(
            (
                self.disparity_dir / f"{sequence}{suffix}"
                for suffix in DISPARITY_SUFFIXES
                if (self.disparity_dir / f"{sequence}{suffix}").exists()
            ),
            None,
        )
        if path is None:
            raise FileNotFoundError(
                f"no disparity for {sequence} in {self.disparity_dir} "
                f"(expected {sequence}.npy, .npz, a PNG folder {sequence}/ or {sequence}.mp4)"
            )
        # the file covers the whole sequence: normalise over the frames evaluated, as predict.py would
        raw = read_disparity_file(path)
        if raw.shape[0] < len(frames):
            raise ValueError(f"disparity {path} has {raw.shape[0]} frames, the sequence {len(frames)} or more")
        return prepare_disparity(raw[: len(frames)], path, len(frames), frames.shape[1:3])
