"""The disparity of a video to refocus: read from files, or estimated by a depth network.

Either way the result is what the model and the classical renderer take (§3.1): float32 [T, H, W] at the frames'
size, min-max normalised over the **whole video** (``any2bokeh.data.disparity.normalize_disparity``, the units of the
training data), 1 = nearest. Per-frame normalisation would make the focal plane flicker.

- **Files** (``load_disparity``): a ``.npy`` array [T, H, W] (or [H, W] for one frame, or [T, 1, H, W]); a ``.npz``
  holding one array (or one named ``disparity``); a folder of 16-bit or 8-bit grey PNGs (or float TIFFs), in
  frame-number order; or a grey video. Values may have any range and dtype; larger = nearer, as disparity and the
  relative inverse depth of Depth Anything are. For depth-like files (larger = farther, e.g. metres) pass ``inverse=True``: the disparity is
  then 1 / depth, and a depth <= 0 is an error naming the file and the frame.
- **A depth network** (``DepthNetwork``): a transformers depth-estimation model in a local folder, as Depth Anything
  V2's ``-hf`` releases are laid out (``config.json``, ``model.safetensors``, ``preprocessor_config.json``), loaded
  with ``AutoModelForDepthEstimation`` and its image processor and run in frame batches. Relative models give
  inverse depth, which is the disparity; a model whose config says ``depth_estimation_type: metric`` gives depth,
  which is inverted.
- Maps of another size than the frames are resized to them (bilinear). A NaN or infinite value is an error naming
  the file and the frame; so is a frame count other than the video's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from any2bokeh.data.disparity import normalize_disparity
from any2bokeh.io import IMAGE_EXTENSIONS, list_frames, read_image_array, read_video
from any2bokeh.utils.pretrained import check_model_folder


class DisparityError(ValueError):
    """A disparity that cannot be used: unreadable, NaN or infinite, of the wrong frame count or shape."""


def read_disparity_file(path: str | Path) -> Tensor:
    """The raw values of a disparity file or folder (see the module docstring): float64 [T, h, w]."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DisparityError(f"disparity file does not exist: {path}")
    try:
        if path.is_dir():
            files = list_frames(path)
            if not files:
                raise DisparityError(f"no disparity frames ({', '.join(IMAGE_EXTENSIONS)}) in {path}")
            frames = [_grey(read_image_array(file), file) for file in files]
            sizes = sorted({frame.shape for frame in frames})
            if len(sizes) > 1:
                raise DisparityError(f"disparity frames of different sizes {sizes} in {path}")
            array = np.stack(frames)
        elif path.suffix.lower() == ".npy":
            array = np.load(path, allow_pickle=False)
        elif path.suffix.lower() == ".npz":
            array = _npz_array(path)
        else:
            # a grey video: the three decoded channels are equal up to compression; average them
            array = read_video(path).frames.astype(np.float64).mean(-1)
    except (OSError, ValueError) as error:
        if isinstance(error, DisparityError):
            raise
        raise DisparityError(f"cannot read disparity {path}: {error}") from error
    if array.dtype.kind not in "uif":
        raise DisparityError(f"disparity {path} holds {array.dtype} values, not numbers")
    if array.ndim == 4 and array.shape[1] == 1:
        array = array[:, 0]  # [T, 1, h, w] -> [T, h, w]
    elif array.ndim == 2:
        array = array[None]  # one frame: [h, w] -> [1, h, w]
    if array.ndim != 3 or min(array.shape) == 0:
        raise DisparityError(f"disparity {path} must be [T, H, W], got shape {array.shape}")
    return torch.from_numpy(array.astype(np.float64))


def _grey(array: np.ndarray, path: Path) -> np.ndarray:
    """One grey channel of an image array: [h, w] as stored, or the first channel of a grey RGB image."""
    if array.ndim == 3:
        return array[..., 0]
    if array.ndim != 2:
        raise DisparityError(f"disparity frame {path} has shape {array.shape}, expected a grey image")
    return array


def _npz_array(path: Path) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.keys())
        if len(names) == 1:
            return archive[names[0]]
        if "disparity" in names:
            return archive["disparity"]
    raise DisparityError(f"{path} holds arrays {names}: keep one, or name it 'disparity'")


def prepare_disparity(
    raw: Tensor,
    source: str | Path,
    num_frames: int | None = None,
    size: tuple[int, int] | None = None,
    inverse: bool = False,
) -> Tensor:
    """Checks raw disparity [T, h, w] from ``source`` and returns it normalised over the clip at ``size``.

    Args:
        raw: any real dtype, [T, h, w], larger = nearer (or larger = farther with ``inverse``).
        source: the file, folder or model it came from, for error messages.
        num_frames: the video's frame count; another count is an error.
        size: (H, W) of the frames; the maps are resized to it (bilinear) when they differ.
        inverse: the values are depth; the disparity is their reciprocal.

    Returns:
        float32 [T, H, W] in [0, 1], min-max over all frames, 1 = nearest.
    """
    values = raw.double()
    finite = torch.isfinite(values).flatten(1).all(1)  # [T]
    if not finite.all():
        frame = int((~finite).nonzero()[0, 0])
        raise DisparityError(f"disparity from {source} has NaN or infinite values in frame {frame}")
    if inverse:
        positive = (values > 0).flatten(1).all(1)  # [T]
        if not positive.all():
            frame = int((~positive).nonzero()[0, 0])
            raise DisparityError(f"depth from {source} has values <= 0 in frame {frame}; inverse=True needs depth > 0")
        values = 1 / values
    if num_frames is not None and values.shape[0] != num_frames:
        raise DisparityError(f"disparity from {source} has {values.shape[0]} frames, the video has {num_frames}")
    if size is not None and tuple(values.shape[-2:]) != tuple(size):
        # [T, h, w] -> [T, 1, h, w] -> [T, 1, H, W] -> [T, H, W]; antialiased when shrinking
        shrink = size[0] < values.shape[-2] or size[1] < values.shape[-1]
        values = F.interpolate(
            values[:, None], size=tuple(size), mode="bilinear", align_corners=False, antialias=shrink
        )[:, 0]
    return normalize_disparity(values)


def load_disparity(
    path: str | Path, num_frames: int | None = None, size: tuple[int, int] | None = None, inverse: bool = False
) -> Tensor:
    """A disparity file or folder as float32 [T, H, W] in [0, 1], normalised over the clip (see the module docstring)."""
    return prepare_disparity(read_disparity_file(path), path, num_frames, size, inverse)


class DepthNetwork:
    """A transformers depth-estimation model from a local folder (Depth Anything V2 layout), run in frame batches.

    Args:
        folder: holds ``config.json``, the weights (``model.safetensors`` or ``pytorch_model.bin``, or their sharded
            index) and ``preprocessor_config.json``.
        device: where the network runs.
        dtype: the network's dtype (e.g. torch.float16 on a GPU); default float32.
        batch_size: frames per forward pass.
    """

    def __init__(
        self,
        folder: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        batch_size: int = 8,
    ):
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        self.folder = check_model_folder(folder, "depth model")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device, self.dtype, self.batch_size = torch.device(device), dtype or torch.float32, batch_size
        self.model = AutoModelForDepthEstimation.from_pretrained(self.folder, local_files_only=True)
        self.model.to(self.device, self.dtype).eval()
        self.processor = AutoImageProcessor.from_pretrained(self.folder, local_files_only=True)
        # relative models (Depth Anything's default) predict inverse depth; metric ones predict depth
        self.predicts_depth = getattr(self.model.config, "depth_estimation_type", "relative") == "metric"

    @torch.no_grad()
    def raw(self, frames: np.ndarray) -> Tensor:
        """The network's output for uint8 frames [T, H, W, 3], resized to the frames: float32 [T, H, W] on the CPU."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"DepthNetwork expects uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
        outputs = []
        for start in range(0, len(frames), self.batch_size):
            batch = list(frames[start : start + self.batch_size])
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            depth = self.model(pixel_values=pixels.to(self.device, self.dtype)).predicted_depth  # [B, h, w]
            # [B, h, w] -> [B, 1, H, W] -> [B, H, W]
            depth = F.interpolate(depth[:, None].float(), size=frames.shape[1:3], mode="bilinear", align_corners=False)[
                :, 0
            ]
            outputs.append(depth.cpu())
        return torch.cat(outputs)

    def __call__(self, frames: np.ndarray, stabilize: bool = False) -> Tensor:
        """Disparity of uint8 frames [T, H, W, 3]: float32 [T, H, W] in [0, 1], normalised over the clip.

        stabilize: align each frame's map to the previous one by a robust scale and shift over the pixels that
            do not move (`steady_depth`) before the clip's min-max; `last_report` then holds the flicker before
            and after.
        """
        raw = self.raw(frames)
        self.last_report = None
        if not stabilize:
            return prepare_disparity(raw, self.folder, len(frames), inverse=self.predicts_depth)
        from any2bokeh.inference.steady_depth import stabilize_disparity

        disparity = 1 / raw.clamp_min(1e-6) if self.predicts_depth else raw
        steady, self.last_report = stabilize_disparity(disparity, frames)
        return prepare_disparity(steady, self.folder, len(frames))


def estimate_disparity(
    frames: np.ndarray,
    folder: str | Path,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    batch_size: int = 8,
) -> Tensor:
    """Loads the depth network in ``folder`` and returns the disparity of uint8 frames [T, H, W, 3] (see DepthNetwork)."""
    return DepthNetwork(folder, device, dtype, batch_size)(frames)
