"""Small writers for the media files that loading tests make themselves.

Everything here writes real files (H.264 mp4 through PyAV, PNG/JPEG through Pillow), so the
loaders under test decode exactly what they would decode in the wild.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image


def write_mp4(path: str | Path, frames_uint8: np.ndarray, fps: int = 10) -> Path:
    """Write frames [T, H, W, 3] uint8 as an H.264 mp4 and return the path.

    H and W must be even (yuv420p). Encoding is near-lossless (crf 1), which keeps decoded
    values within a few levels of the input. decord 0.6 mis-reads some frame widths (24 and 48
    fail, 32, 40, 64, 80 and 96 work), so tests that decode with decord use such widths.
    """
    frames = np.asarray(frames_uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    _, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"H.264 needs an even size, got {height}x{width}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "1", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_frame_folder(folder: str | Path, frames_uint8: np.ndarray, ext: str = "png") -> Path:
    """Write frames [T, H, W, 3] (or [T, H, W]) uint8 as 00000.<ext>, 00001.<ext>, ..."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(np.asarray(frames_uint8)):
        Image.fromarray(frame).save(folder / f"{t:05d}.{ext}")
    return folder


def write_videomatte_clip(
    root: str | Path,
    name: str,
    rgb: np.ndarray,
    alpha: np.ndarray,
    as_frames: bool = False,
    ext: str = "png",
    fps: int = 10,
) -> Path:
    """Write one clip in VideoMatte240K layout under root and return root.

    rgb: [T, H, W, 3] uint8; alpha: [T, H, W] uint8. As mp4s: root/fgr/NAME.mp4 and
    root/pha/NAME.mp4 (alpha stored grey in all three channels, as VideoMatte240K does).
    As frame folders: root/fgr/NAME/*.<ext> and root/pha/NAME/*.<ext>.
    """
    root = Path(root)
    alpha = np.asarray(alpha)
    if as_frames:
        write_frame_folder(root / "fgr" / name, rgb, ext)
        write_frame_folder(root / "pha" / name, alpha, ext)
    else:
        write_mp4(root / "fgr" / f"{name}.mp4", rgb, fps)
        write_mp4(root / "pha" / f"{name}.mp4", np.repeat(alpha[..., None], 3, axis=-1), fps)
    return root


def write_image_mattes(
    image_dir: str | Path, alpha_dir: str | Path, n: int, size: tuple[int, int] = (32, 48), seed: int = 0
) -> list[str]:
    """Write n image mattes in AM-2k layout (image_dir/STEM.jpg + alpha_dir/STEM.png).

    Each alpha is a soft disc; each image is random colour. size is (H, W). Returns the stems.
    """
    image_dir, alpha_dir = Path(image_dir), Path(alpha_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    alpha_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    height, width = size
    yy, xx = np.mgrid[0:height, 0:width]
    stems = []
    for i in range(n):
        stem = f"m_{i:03d}"
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        radius = min(height, width) * (0.25 + 0.1 * i % 0.2)
        dist = np.hypot(yy - height / 2, xx - width / 2)
        alpha = (np.clip(radius - dist + 2, 0, 4) / 4 * 255).astype(np.uint8)
        Image.fromarray(image).save(image_dir / f"{stem}.jpg", quality=95)
        Image.fromarray(alpha).save(alpha_dir / f"{stem}.png")
        stems.append(stem)
    return stems


def write_corrupt_mp4(path: str | Path, size: int = 2048, seed: int = 0) -> Path:
    """Write a file named .mp4 holding random bytes: no decoder can open it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def write_matting_tree(root: Path) -> None:
    """The layout conf/data/matting.yaml reads: a VideoMatte240K clip, two AM-2k mattes, two BG-20k images."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    alpha = np.zeros((4, 32, 32), dtype=np.uint8)
    alpha[:, 8:24, 8:24] = 255
    write_videomatte_clip(root / "VideoMatte240K" / "train", "clip0", rgb, alpha)
    write_image_mattes(root / "AM-2k/train/original", root / "AM-2k/train/mask", n=2)
    (root / "BG-20k/train").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(root / f"BG-20k/train/bg{i}.jpg")


def write_video_with_audio(
    path: str | Path,
    frames_uint8: np.ndarray,
    fps: int = 10,
    audio_codec: str = "aac",
    sample_rate: int = 44100,
    tone_hz: float = 440.0,
) -> Path:
    """Write frames [T, H, W, 3] uint8 (even H and W) as H.264 plus a mono sine tone as long as the
    video, in the audio codec given ("aac" in an .mp4, "pcm_s16le" in a .mov, ...)."""
    frames = np.asarray(frames_uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seconds = len(frames) / fps
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    tone = (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = frames.shape[2], frames.shape[1]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "1", "preset": "ultrafast"}
        audio = container.add_stream(audio_codec, rate=sample_rate)
        audio.layout = "mono"
        for frame in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode())
        step = 1024
        for start in range(0, len(tone), step):
            chunk = av.AudioFrame.from_ndarray(tone[None, start : start + step], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = sample_rate, start
            container.mux(audio.encode(chunk))
        container.mux(audio.encode(None))
    return path
