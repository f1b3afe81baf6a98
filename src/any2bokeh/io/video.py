"""Reading and writing frames: video files, folders of frames and single images.

The one place in the package that touches media files. Contracts:

- Decoded frames are **uint8 numpy arrays [T, H, W, 3]** (RGB, channel last), as decoders give
  them and encoders take them; a 4K clip stays four times smaller than in float.
  ``uint8_to_float`` turns them into float32 [T, 3, H, W] in [0, 1] for torch, ``float_to_uint8``
  turns float frames back.
- Video files (mp4, mov, webm, ...) are decoded with decord, or with PyAV when decord is missing
  or fails on the file. Folders of frames are read in frame-number order (``frame_2`` before
  ``frame_10``). Frame folders and images have no frame rate of their own: they get ``fps``.
- Written videos are H.264 yuv420p mp4s (what players open), with the audio stream of a source
  file copied over when it has one. Every file and folder is written under a temporary name in
  its own folder and renamed when complete, so an interrupted run never leaves a file that looks
  finished.
- Anything wrong with a file on disk raises ``MediaError`` naming the path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from any2bokeh.utils.atomic import atomic_path

from .files import (
    IMAGE_EXTENSIONS,
    MediaError,
    check_frames,
    list_frames,
    read_image_array,
)

# Frame folders and single images carry no frame rate.
DEFAULT_FPS = 24.0
# Audio codecs the mp4 muxer takes as they are; others are re-encoded to AAC.
MP4_AUDIO_CODECS = frozenset({"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"})


# ---- video files ----


class VideoReader:
    """Random access to the frames of one video file.

    decord decodes when it is installed and opens the file; PyAV takes over when decord is missing,
    cannot open the file, or fails on a read (decord 0.6 rejects some frame widths). A file that no
    backend opens raises ``MediaError`` naming it.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise MediaError(f"video file does not exist: {self.path}")
        self._decord = _open_with_decord(self.path)
        if self._decord is not None:
            self.num_frames, self.fps = len(self._decord), float(self._decord.get_avg_fps())
        else:
            self.num_frames, self.fps = self._probe()

    def __len__(self) -> int:
        return self.num_frames

    @property
    def backend(self) -> str:
        """ "decord" or "pyav": the decoder the next read uses."""
        return "pyav" if self._decord is None else "decord"

    def _probe(self) -> tuple[int, float]:
        """Frame count and rate through PyAV; the count falls back to counting packets."""
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise MediaError(f"no video stream in {self.path}")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate
                count = stream.frames or sum(1 for packet in container.demux(stream) if packet.size > 0)
        except av.FFmpegError as error:
            raise MediaError(f"cannot decode video {self.path}: {error}") from error
        if count == 0:
            raise MediaError(f"video has no frames: {self.path}")
        return count, float(rate) if rate else DEFAULT_FPS

    def get_frames(self, frame_ids: Iterable[int]) -> np.ndarray:
        """Frames ``frame_ids`` (each in [0, len)) as uint8 [len(frame_ids), H, W, 3]."""
        frame_ids = [int(i) for i in frame_ids]
        if not frame_ids:
            raise ValueError(f"no frame ids given for {self.path}")
        bad = [i for i in frame_ids if not 0 <= i < self.num_frames]
        if bad:
            raise IndexError(f"frames {bad[:5]} outside the {self.num_frames} frames of {self.path}")
        if self._decord is not None:
            try:
                frames = self._decord.get_batch(frame_ids).asnumpy()
                if frames.ndim == 4 and frames.shape[-1] == 3:
                    return frames
            except Exception:  # decord raises its own DECORDError (a RuntimeError) and others
                pass
            self._decord = None  # decode this file with PyAV from now on
        return self._decode_with_pyav(frame_ids)

    def _decode_with_pyav(self, frame_ids: list[int]) -> np.ndarray:
        wanted = set(frame_ids)
        found: dict[int, np.ndarray] = {}
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for index, frame in enumerate(container.decode(stream)):
                    if index in wanted:
                        found[index] = frame.to_ndarray(format="rgb24")
                    if len(found) == len(wanted):
                        break
        except (av.FFmpegError, IndexError) as error:
            raise MediaError(f"cannot decode video {self.path}: {error}") from error
        missing = sorted(wanted - found.keys())
        if missing:
            raise MediaError(
                f"cannot decode frames {missing[:5]} of video {self.path}: it decodes to {len(found)} frames"
            )
        return np.stack([found[i] for i in frame_ids])


def _open_with_decord(path: Path):
    """A decord VideoReader, or None when decord is missing or cannot open the file."""
    try:
        import decord
    except ImportError:
        return None
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except Exception:  # DECORDError (a RuntimeError) for files it does not read
        return None


@dataclass
class Video:
    """Decoded frames: ``frames`` uint8 [T, H, W, 3], ``fps`` frames per second, ``path`` the source."""

    frames: np.ndarray
    fps: float
    path: Path

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.frames.shape[1], self.frames.shape[2]


def read_video(path: str | Path, fps: float | None = None) -> Video:
    """Every frame of a video file, a folder of frames, or one image (a clip of one frame).

    ``fps`` overrides the rate; frame folders and images default to ``DEFAULT_FPS``.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        files = list_frames(path)
        if not files:
            raise MediaError(f"no frames ({', '.join(IMAGE_EXTENSIONS)}) in {path}")
        frames = [read_image_array(file, "RGB") for file in files]
        sizes = sorted({frame.shape[:2] for frame in frames})
        if len(sizes) > 1:
            raise MediaError(f"frames of different sizes {sizes} in {path}")
        return Video(np.stack(frames), float(fps or DEFAULT_FPS), path)
    if not path.is_file():
        raise MediaError(f"no such video, image or frame folder: {path}")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return Video(read_image_array(path, "RGB")[None], float(fps or DEFAULT_FPS), path)
    reader = VideoReader(path)
    return Video(reader.get_frames(range(len(reader))), float(fps or reader.fps), path)


def has_audio(path: str | Path) -> bool:
    """Whether ``path`` is a media file holding an audio stream (False for folders, images, undecodable files)."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() in IMAGE_EXTENSIONS:
        return False
    try:
        with av.open(str(path)) as container:
            return len(container.streams.audio) > 0
    except av.FFmpegError:
        return False


# ---- writing ----


# Container formats by the suffix of the target (its temporary name has no meaningful suffix).
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}


def write_mp4(
    path: str | Path, frames, fps: float = DEFAULT_FPS, *, audio_from: str | Path | None = None, crf: int = 18
) -> Path:
    """Write uint8 frames [T, H, W, 3] (numpy or torch) as H.264 yuv420p, atomically.

    yuv420p stores colour at half resolution, so an odd height or width is padded by one edge
    pixel. ``audio_from``: a media file whose first audio stream is copied packet for packet
    (re-encoded to AAC when mp4 cannot hold its codec, e.g. PCM); a file without audio adds none.
    ``crf``: x264's constant quality (0 lossless, 18 visually lossless, 23 its default).
    """
    frames = check_frames(frames)
    path = Path(path)
    if path.suffix.lower() not in _FORMATS:
        raise ValueError(f"write_mp4 writes {', '.join(_FORMATS)} files, got {path}")
    # [T, H, W, 3] -> [T, H + H % 2, W + W % 2, 3]
    frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)), mode="edge")
    rate = Fraction(fps).limit_denominator(10_000)  # 29.97... -> 30000/1001
    with atomic_path(path) as temporary, av.open(str(temporary), mode="w", format=_FORMATS[path.suffix.lower()]) as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        audio = _AudioCopy(out, Path(audio_from)) if audio_from is not None else None
        for index, frame in enumerate(frames):
            if audio is not None:
                audio.mux_until(index / rate)  # keep the two streams interleaved in time
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
        if audio is not None:
            audio.mux_until(None)
    return path


class _AudioCopy:
    """Moves the first audio stream of ``source`` into the output container ``out``."""

    def __init__(self, out, source: Path):
        self.input = None
        if not has_audio(source):
            return
        self.input = av.open(str(source))
        self.source = self.input.streams.audio[0]
        self.reencode = self.source.codec_context.name not in MP4_AUDIO_CODECS
        if self.reencode:
            self.stream = out.add_stream("aac", rate=self.source.rate)
            self.stream.layout = self.source.layout
            self.items = self.input.decode(self.source)
        else:
            # PyAV >= 14 names it add_stream_from_template; older versions take add_stream(template=...)
            from_template = getattr(out, "add_stream_from_template", None)
            self.stream = from_template(self.source) if from_template else out.add_stream(template=self.source)
            self.items = self.input.demux(self.source)
        # audio times are kept relative to the first video frame, which the output puts at 0
        video = self.input.streams.video
        first = video[0].start_time if video and video[0].start_time is not None else None
        self.offset = float(first * video[0].time_base) if first is not None else 0.0
        self.out = out
        self.pending = None

    def mux_until(self, seconds) -> None:
        """Mux audio packets (or frames to re-encode) that start before ``seconds`` (all when None)."""
        if self.input is None:
            return
        while True:
            item = self.pending if self.pending is not None else next(self.items, None)
            self.pending = None
            if item is None:
                self._finish()
                return
            if item.pts is None and not self.reencode:
                continue  # demux ends with an empty flush packet
            start = float(item.pts * item.time_base) - self.offset if item.pts is not None else 0.0
            if seconds is not None and start >= seconds:
                self.pending = item
                return
            self._mux(item)

    def _mux(self, item) -> None:
        if self.reencode:
            item.pts = None  # the encoder numbers its own samples
            self.out.mux(self.stream.encode(item))
            return
        shift = round(self.offset / item.time_base)
        item.pts -= shift
        if item.dts is not None:
            item.dts -= shift
        item.stream = self.stream
        self.out.mux(item)

    def _finish(self) -> None:
        if self.reencode:
            self.out.mux(self.stream.encode(None))
        self.input.close()
        self.input = None
