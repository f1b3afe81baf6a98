"""DAVIS-layout folders the tests write: textured JPEG frames and palette annotations per sequence."""

from pathlib import Path

import numpy as np
from PIL import Image

from tests.helpers.video_files import write_frame_folder


def write_davis(root: Path, sequences: dict[str, int], size=(96, 128)) -> None:
    """DAVIS-layout sequences: textured JPEG frames, palette annotations (object 1 a square, object 2 a bar)."""
    height, width = size
    rng = np.random.default_rng(0)
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9)
    for name, frames in sequences.items():
        texture = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
        write_frame_folder(root / "JPEGImages" / "480p" / name, texture, ext="jpg")
        annotations = root / "Annotations" / "480p" / name
        annotations.mkdir(parents=True)
        for t in range(frames):
            label = np.zeros((height, width), np.uint8)
            label[20:60, 30 + t : 70 + t] = 1
            label[70:90, :] = 2
            image = Image.fromarray(label, mode="P")
            image.putpalette(palette)
            image.save(annotations / f"{t:05d}.png")
