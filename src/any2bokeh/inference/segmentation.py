"""The subject's masks through a video, from a prompt, with the Segment Anything video models in transformers.

A subject is chosen on one frame and tracked through the whole clip, forwards and backwards from that frame:

- by **text** (`Prompt(text="the dancer")`): SAM 3's concept prompts (`Sam3VideoModel`). Its detector finds every
  instance of the concept on every frame and its tracker keeps their identities, in one checkpoint
  (`facebook/sam3`), so no second model is needed; the instance with the highest summed detection score over the
  clip is the subject. (A Grounding DINO box handed to SAM 2 would need two checkpoints and would find the subject on
  one frame only.)
- by a **point** or a **box** on frame `frame`: SAM 2's video predictor (`Sam2VideoModel`, any
  `facebook/sam2.1-hiera-*` folder), or SAM 3's tracker from a SAM 3 folder (`Sam3TrackerVideoModel`, the same
  weights as its video model's tracker). Their masks are soft (the sigmoid of the logits).

Points and boxes are in [0, 1] image coordinates, as `focus.point` is. The folder is a local copy in the hub's
layout (`config.json`, `model.safetensors`, the processor's files); `Segmenter` loads it once and reads its kind
from the config. Frames go through the processor in batches and are held on the CPU at the model's input size in
the session's dtype (SAM 2 takes 1024 x 1024, SAM 3 1008 x 1008: 6 MB a frame in bfloat16), only the frame
being tracked moves to the device.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from any2bokeh.utils.pretrained import check_model_folder

# the config's model_type: SAM 3 takes text (and points and boxes through its tracker); SAM 2 points and boxes
TEXT_TYPES = ("sam3_video", "sam3")
VISUAL_TYPES = ("sam2_video", "sam2", "sam3_tracker_video")
# each model_type's video model and processor in transformers
VIDEO_CLASSES = {
    "sam3_video": ("Sam3VideoModel", "Sam3VideoProcessor"),
    "sam3": ("Sam3VideoModel", "Sam3VideoProcessor"),
    "sam2_video": ("Sam2VideoModel", "Sam2VideoProcessor"),
    "sam2": ("Sam2VideoModel", "Sam2VideoProcessor"),
    "sam3_tracker_video": ("Sam3TrackerVideoModel", "Sam3TrackerVideoProcessor"),
}
CHECKPOINTS = (
    "text prompts: facebook/sam3 (848M parameters, 3.4 GB); point or box prompts: facebook/sam2.1-hiera-large "
    "(224M, 0.9 GB), -base-plus (81M), -small (46M) or -tiny (39M, 0.16 GB)"
)


def needs_segmenter(kind: str) -> str:
    """The error of a focus `kind` (text, box) given without a segmenter: what to download and set."""
    return (
        f"focus.{kind} needs segmenter=<a local SAM video model folder>: download {CHECKPOINTS} "
        "(e.g. `huggingface-cli download facebook/sam3 --local-dir sam3`)"
    )


@dataclass(frozen=True)
class Prompt:
    """What to segment: `text`, or a `point` [x, y] or a `box` [x0, y0, x1, y1] (in [0, 1]) on frame `frame`."""

    text: str | None = None
    point: tuple[float, float] | None = None
    box: tuple[float, float, float, float] | None = None
    frame: int = 0

    def __post_init__(self) -> None:
        given = [name for name in ("text", "point", "box") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"a segmentation prompt sets exactly one of text, point, box; got {given or 'none'}")
        if self.text is not None and (not isinstance(self.text, str) or not self.text.strip()):
            raise ValueError(f"focus.text must be a non-empty string, got {self.text!r}")
        for name, size in (("point", 2), ("box", 4)):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                numbers = [float(v) for v in value]
            except (TypeError, ValueError):
                raise ValueError(f"focus.{name} must be {size} numbers in [0, 1], got {value!r}") from None
            if len(numbers) != size or not all(0.0 <= v <= 1.0 for v in numbers):
                raise ValueError(f"focus.{name} must be {size} numbers in [0, 1] (image coordinates), got {value!r}")
            if name == "box" and (numbers[2] <= numbers[0] or numbers[3] <= numbers[1]):
                raise ValueError(f"focus.box must be [x0, y0, x1, y1] with x0 < x1 and y0 < y1, got {value!r}")
            object.__setattr__(self, name, tuple(numbers))
        if isinstance(self.frame, bool) or not isinstance(self.frame, int) or self.frame < 0:
            raise ValueError(f"focus.frame must be an int >= 0, got {self.frame!r}")


def model_type(folder: str | Path) -> str:
    """The `model_type` of a segmenter folder, after checking that its files are there."""
    processor_files = ("processor_config.json", "preprocessor_config.json")
    folder = check_model_folder(folder, "segmenter", processor_files, hint=f" (download one of {CHECKPOINTS})")
    kind = json.loads((folder / "config.json").read_text()).get("model_type")
    if kind not in TEXT_TYPES + VISUAL_TYPES:
        raise ValueError(
            f"segmenter folder {folder} holds a {kind!r} model; expected a SAM 2 or SAM 3 video model ({CHECKPOINTS})"
        )
    return kind


class Segmenter:
    """A SAM 2 or SAM 3 video model from a local folder; `segmenter(frames, prompt)` gives the subject's masks.

    Args:
        folder: the model in the hub's layout.
        device: where the model runs.
        dtype: the model's dtype; default bfloat16 on CUDA, else float32.
        batch_size: frames per call of the processor.
    """

    def __init__(
        self, folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None, batch_size=16
    ):
        import transformers

        self.folder = Path(folder).expanduser()
        self.kind = model_type(self.folder)
        self.device = torch.device(device)
        self.dtype = dtype or (torch.bfloat16 if self.device.type == "cuda" else torch.float32)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        # the video classes by name: an image-model config ("sam2", "sam3") loads into them as well
        model_class, processor_class = (getattr(transformers, name) for name in VIDEO_CLASSES[self.kind])
        self.processor = processor_class.from_pretrained(self.folder, local_files_only=True)
        model = model_class.from_pretrained(self.folder, local_files_only=True)
        self.model = model.to(self.device, self.dtype).eval()
        self._tracker: tuple | None = None

    @property
    def prompts(self) -> tuple[str, ...]:
        """The prompt kinds this model takes."""
        return ("text", "point", "box") if self.kind in TEXT_TYPES else ("point", "box")

    def _visual(self) -> tuple:
        """(processor, model) for point and box prompts: the model itself, or a SAM 3 folder's tracker, loaded once."""
        if self.kind not in TEXT_TYPES:
            return self.processor, self.model
        if self._tracker is None:
            from transformers import Sam3TrackerVideoModel, Sam3TrackerVideoProcessor

            processor = Sam3TrackerVideoProcessor.from_pretrained(self.folder, local_files_only=True)
            model = Sam3TrackerVideoModel.from_pretrained(self.folder, local_files_only=True)
            self._tracker = (processor, model.to(self.device, self.dtype).eval())
        return self._tracker

    def __call__(self, frames, prompt: Prompt, progress: Callable[[int, int], None] | None = None) -> Tensor:
        """The subject's masks float32 [T, H, W] in [0, 1] (0 where it is absent) for uint8 frames [T, H, W, 3]."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
            raise ValueError(f"the segmenter takes uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
        kind = "text" if prompt.text is not None else "point" if prompt.point is not None else "box"
        if kind not in self.prompts:
            raise ValueError(
                f"segmenter {self.folder} ({self.kind}) takes {' or '.join(self.prompts)} prompts, not {kind}: "
                "use a SAM 3 folder (facebook/sam3) for text"
            )
        if prompt.frame >= len(frames):
            raise ValueError(f"focus.frame {prompt.frame} lies past the video's last frame {len(frames) - 1}")
        processor, model = (self.processor, self.model) if kind == "text" else self._visual()
        session = self._session(processor, frames)
        with torch.inference_mode():
            if kind == "text":
                return self._track_text(session, prompt.text, frames.shape[:3], progress)
            return self._track_visual(processor, model, session, prompt, frames.shape[:3], progress)

    def _session(self, processor, frames: np.ndarray):
        """An inference session holding the processed frames on the CPU, processed `batch_size` at a time."""
        height, width = frames.shape[1:3]
        session = processor.init_video_session(
            inference_device=self.device, video_storage_device="cpu", dtype=self.dtype
        )
        session.video_height, session.video_width = height, width
        for start in range(0, len(frames), self.batch_size):
            batch = frames[start : start + self.batch_size]
            pixels = processor.video_processor(videos=[list(batch)], return_tensors="pt").pixel_values_videos[0]
            for offset, frame in enumerate(pixels):
                session.add_new_frame(frame, start + offset)
        return session

    def _track_visual(self, processor, model, session, prompt: Prompt, size: tuple[int, int, int], progress) -> Tensor:
        """SAM 2 (or SAM 3's tracker): the prompt on its frame, then propagation forwards and backwards; soft masks."""
        num_frames, height, width = size
        if prompt.point is not None:
            x, y = prompt.point
            inputs = {"input_points": [[[[x * width, y * height]]]], "input_labels": [[[1]]]}
        else:
            x0, y0, x1, y1 = prompt.box
            inputs = {"input_boxes": [[[x0 * width, y0 * height, x1 * width, y1 * height]]]}
        processor.add_inputs_to_inference_session(session, frame_idx=prompt.frame, obj_ids=1, **inputs)
        masks = torch.zeros(num_frames, height, width)
        done = set()
        for reverse in (False, True):
            for out in model.propagate_in_video_iterator(session, start_frame_idx=prompt.frame, reverse=reverse):
                logits = processor.post_process_masks(
                    [out.pred_masks.float().cpu()], original_sizes=[[height, width]], binarize=False
                )[0]  # [objects, 1, H, W]
                masks[out.frame_idx] = torch.sigmoid(logits[0, 0].float())
                done.add(out.frame_idx)
                if progress:
                    progress(len(done), num_frames)
        return masks

    def _track_text(self, session, text: str, size: tuple[int, int, int], progress) -> Tensor:
        """SAM 3: every instance of the concept on every frame; the one with the highest summed score is the subject."""
        num_frames, height, width = size
        self.processor.add_text_prompt(session, text)
        per_object: dict[int, dict[int, Tensor]] = {}
        scores: dict[int, float] = {}
        for done, out in enumerate(self.model.propagate_in_video_iterator(session, start_frame_idx=0), start=1):
            post = self.processor.postprocess_outputs(session, out)
            for object_id, score, mask in zip(post["object_ids"].tolist(), post["scores"].tolist(), post["masks"]):
                per_object.setdefault(object_id, {})[out.frame_idx] = mask.cpu()
                scores[object_id] = scores.get(object_id, 0.0) + float(score)
            if progress:
                progress(done, num_frames)
        if not scores:
            raise ValueError(f"the segmenter {self.folder} finds no {text!r} on any frame of the video")
        subject = max(scores, key=scores.get)
        masks = torch.zeros(num_frames, height, width)
        for frame, mask in per_object[subject].items():
            masks[frame] = mask.float()
        return masks
