"""Writes docs/images/demo_refocus.png: a frame of `python predict.py`'s demo clip, as given and refocused.

The clip is the one predict.py builds when it gets no input (`any2bokeh.prediction.demo`), rendered by
the classical renderer (no weights) at predict.py's default K, focused on the clip's target object at
its true disparity. Nothing is downloaded; it runs on the CPU in seconds.

    python docs/make_demo_figure.py [--frame 12] [--k 16] [--out docs/images/demo_refocus.png]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from any2bokeh.inference.renderers import ClassicalRenderer
from any2bokeh.io import read_video
from any2bokeh.prediction.demo import DEMO_NAME, write_demo_clip

GAP, BAND = 8, 22


def refocus_frame(frame: int, k: float) -> tuple[np.ndarray, np.ndarray]:
    """The demo clip's frame `frame` (uint8 [H, W, 3]) and its refocused render."""
    with tempfile.TemporaryDirectory() as folder:
        video_path, _ = write_demo_clip(folder)
        frames = torch.from_numpy(read_video(video_path).frames[frame : frame + 1]).permute(0, 3, 1, 2)
        disparity = torch.from_numpy(np.load(Path(folder) / f"{DEMO_NAME}.disparity.npy")[frame : frame + 1])
        true_focus = json.loads((Path(folder) / f"{DEMO_NAME}.focus.json").read_text())["true_disp_focus"]
    # disparity: [1, H, W] -> [1, 1, H, W]; frames stay uint8 [1, 3, H, W], and so comes the render
    disparity = disparity[:, None].float()
    bokeh = ClassicalRenderer()(frames, disparity, torch.tensor([true_focus[frame]]), torch.tensor([k]))
    return frames[0].permute(1, 2, 0).numpy(), bokeh[0].permute(1, 2, 0).numpy()


def side_by_side(left: np.ndarray, right: np.ndarray, labels: tuple[str, str]) -> Image.Image:
    """Two frames on white, each with its label in a band above it."""
    height, width, _ = left.shape
    canvas = Image.new("RGB", (2 * width + GAP, height + BAND), "white")
    draw = ImageDraw.Draw(canvas)
    for column, (image, label) in enumerate(zip((left, right), labels)):
        x = column * (width + GAP)
        canvas.paste(Image.fromarray(image), (x, BAND))
        draw.text((x + 4, 5), label, fill="black")
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frame", type=int, default=12)
    parser.add_argument("--k", type=float, default=16.0, help="predict.py's default, the paper's unit")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "images" / "demo_refocus.png")
    args = parser.parse_args()
    aif, bokeh = refocus_frame(args.frame, args.k)
    labels = (f"input, frame {args.frame} (all in focus)", f"refocused on the target, K = {args.k:g} (classical)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    side_by_side(aif, bokeh, labels).save(args.out, optimize=True)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
