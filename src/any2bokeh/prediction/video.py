"""One video of a `predict.py` run: read it, find its disparity, d_f and K curves, render it.

Everything that can be wrong with one video (a file that does not decode, a missing disparity or one
of another frame count, NaN disparity, K < 0, d_f outside [0, 1], a focus point outside the frame, an
empty mask, missing weights) raises here with the file and the reason; the caller records the failure
and goes on with the next video.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from any2bokeh.inference.renderers import Renderer
from any2bokeh.inference.resolution import resize, working_size
from any2bokeh.prediction.frame_names import NamedCurves, named_curves
from any2bokeh.prediction.jobs import FOCUS_KINDS, VideoJob, focus_spec, sibling_disparity
from any2bokeh.prediction.subject import Subject, find_subject, mask_pngs, segment_video

# focus is found at about this many pixels: d_f is a mean over the subject, and tracking is faster small
FOCUS_AREA = 512 * 288


@dataclass
class RenderedVideo:
    """A rendered video: frames uint8 [T, H, W, 3]; d_f and K per frame; what the sidecar records."""

    job: VideoJob
    frames: np.ndarray
    fps: float
    disp_focus: Tensor
    k: Tensor
    record: dict[str, Any] = field(default_factory=dict)
    #: the subject's masks uint8 [T, H, W] (0 / 255) to write beside the video (`save_masks`), or None
    masks: np.ndarray | None = None


@dataclass
class FailedVideo:
    """A video that could not be rendered, and why."""

    job: VideoJob
    reason: str
    seconds: float = 0.0


@contextmanager
def _naming(path: str) -> Iterator[None]:
    """Errors raised inside name `path` (loaders that already name it are left as they are)."""
    try:
        yield
    except (OSError, ValueError) as error:
        if path in str(error):
            raise
        kind = type(error) if type(error) in (FileNotFoundError, ValueError) else ValueError
        raise kind(f"{path}: {error}") from error


# depth networks already loaded in this process, by (folder, device): a batch loads each once
_DEPTH_NETWORKS: dict[tuple[str, str], Any] = {}


def job_disparity(job: VideoJob, frames: np.ndarray, device: torch.device) -> tuple[Tensor, str, dict | None]:
    """The video's disparity [T, 1, h, w] normalised over the clip, where it came from, and the depth network's
    steadiness report (`depth_stabilize`; None for disparity from files).

    In order: the `disparity` setting, a sibling `<name>.disparity.npy`, the `depth_model` folder. It keeps
    its own size (renderers resize it), so a 4K clip does not carry a 4K float copy of it.
    frames: uint8 [T, H, W, 3], for the depth model and the frame count.
    """
    from any2bokeh.inference.disparity import DepthNetwork, load_disparity

    num_frames = frames.shape[0]
    source = job.settings.get("disparity") or sibling_disparity(job.input)
    report = None
    if source is not None:
        origin = str(source)
        with _naming(origin):
            disparity = load_disparity(source, num_frames=num_frames)
    elif job.settings.get("depth_model"):
        folder = str(job.settings["depth_model"])
        origin = f"depth_model {folder}"
        with _naming(folder):
            key = (folder, str(device))
            if key not in _DEPTH_NETWORKS:
                _DEPTH_NETWORKS[key] = DepthNetwork(folder, device=device)
            network = _DEPTH_NETWORKS[key]
            disparity = network(frames, stabilize=bool(job.settings.get("depth_stabilize", True)))
            report = network.last_report
    else:
        raise FileNotFoundError(
            f"no disparity for {job.input}: set disparity=, put {Path(job.input).stem}.disparity.npy beside it, "
            "or set depth_model= (a local Depth Anything folder)"
        )
    if disparity.shape[0] != num_frames:
        raise ValueError(f"disparity from {origin} has {disparity.shape[0]} frames, the video {num_frames}")
    # [T, h, w] -> [T, 1, h, w]
    return disparity.float().reshape(num_frames, 1, *disparity.shape[-2:]), origin, report


def job_curves(
    job: VideoJob,
    frames: Tensor,
    disparity: Tensor,
    subject: Subject | None = None,
    segment=None,
    named: NamedCurves | None = None,
) -> tuple[Tensor, Tensor]:
    """d_f [T] and K [T] of a video from its focus and k settings; frames float [T, 3, h, w] in [0, 1].

    A found `subject` gives d_f (`find_subject`); `segment` finds the subjects of text, box and point keyframes
    (`focus_curve`). `named`, the `_zf_<d_f>` and `_k_<K>` of the disparity's file names (`frame_names`), gives d_f
    when no focus is set and K when `k` is null or "names".
    """
    from any2bokeh.inference.keyframes import k_curve, resolve_focus
    from any2bokeh.prediction.frame_names import normalised_focus

    num_frames = frames.shape[0]
    focus = job.settings.get("focus", {})
    k_setting = job.settings.get("k")
    if named is not None and len(named.files) != num_frames:
        raise ValueError(f"{job.settings['disparity']} names {len(named.files)} frames, the video has {num_frames}")
    if _named_focus(job, named):
        disp_focus = normalised_focus(named, job.settings["disparity"])
    elif subject is not None:
        disp_focus = subject.disp_focus
    else:
        disp_focus = resolve_focus(focus_spec(focus), disparity, frames, segment=segment)
    if k_setting in (None, "names") and named is not None and named.k is not None:
        k = named.k.float()
    elif k_setting == "names":
        raise ValueError(f"k=names, but the disparity {job.settings.get('disparity')} has no _k_<K> in its file names")
    else:
        k = k_curve(16 if k_setting is None else k_setting, num_frames)
    return disp_focus.float(), k.float()


def _named_focus(job: VideoJob, named: NamedCurves | None) -> bool:
    """d_f comes from the disparity's `_zf_` file names: they carry it and the run sets no focus."""
    focus = job.settings.get("focus", {})
    if any(focus.get(kind) is not None for kind in FOCUS_KINDS):
        return False
    return named is not None and named.disp_focus is not None


def render_job(job: VideoJob, renderer: Renderer, progress: bool = False) -> RenderedVideo:
    """Read, find the curves, render; raises on anything wrong with this video (see the module docstring)."""
    from any2bokeh.io import read_video

    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 4)
        clock = now

    video = read_video(job.input)
    frames = torch.from_numpy(video.frames)  # uint8 [T, H, W, 3]
    num_frames, height, width = frames.shape[:3]
    lap("read")
    device = renderer.device or torch.device("cpu")
    disparity, disparity_origin, steadiness = job_disparity(job, video.frames, device)
    lap("disparity")
    # the curves are found on a small copy: d_f is a mean over the subject
    small = working_size(height, width, FOCUS_AREA, upscale=False)
    small_frames = resize(frames.permute(0, 3, 1, 2).float() / 255, small).clamp(0, 1)
    small_disparity = resize(disparity, small).clamp(0, 1)
    segmenter = job.settings.get("segmenter")
    segment_bar = _ProgressBar(f"{job.name}: segmenting", "frame") if progress and segmenter else None
    report = segment_bar.report if segment_bar else None
    named = named_curves(job.settings.get("disparity"))
    subject = None
    if not _named_focus(job, named):
        size = disparity.shape[-2:]
        subject = find_subject(job.settings, video.frames, small_frames, small_disparity, size, device, report)
    segment = (lambda spec: segment_video(segmenter, video.frames, spec, device, report)) if segmenter else None
    disp_focus, k = job_curves(job, small_frames, small_disparity, subject, segment, named)
    if segment_bar:
        segment_bar.close()
    lap("focus")
    matte = subject.masks if subject is not None and job.settings.get("matte", True) else None
    if subject is not None and subject.source == "tracker" and not job.settings.get("tracker_matte", False):
        matte = None  # the tracker's region follows the disparity it was grown on, errors and all
    matte = matte if renderer.supports_matte else None
    bar = _ProgressBar(job.name) if progress else None
    rendered = renderer(
        frames.permute(0, 3, 1, 2), disparity, disp_focus, k, progress=bar.report if bar else None, matte=matte
    )  # uint8 [T, 3, H, W]
    if bar:
        bar.close()
    lap("render")
    record = {
        "input": job.input,
        "origin": job.origin,
        "frames": num_frames,
        "height": height,
        "width": width,
        "fps": video.fps,
        "disparity": disparity_origin,
        "depth_flicker": None if steadiness is None else steadiness["flicker"],
        "settings": job.settings,
        "focus": focus_spec(job.settings.get("focus", {})),
        "renderer": renderer.info(),
        "subject": None if subject is None else subject.source,
        "matte": matte is not None,
        "disp_focus": [round(float(v), 6) for v in disp_focus],
        "k": [round(float(v), 6) for v in k],
        "timings": timings,
    }
    masks = mask_pngs(subject.masks, height, width) if subject is not None and job.settings.get("save_masks") else None
    output = rendered.permute(0, 2, 3, 1).contiguous().numpy()
    return RenderedVideo(job, output, video.fps, disp_focus, k, record, masks)


class _ProgressBar:
    """A tqdm bar of one video's render steps (windows or frame chunks) or segmented frames."""

    def __init__(self, name: str, unit: str = "step") -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(desc=name, unit=unit, leave=False, position=1)

    def report(self, done: int, total: int) -> None:
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
