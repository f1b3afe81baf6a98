"""The built-in demo clip of `python predict.py`: a procedural scene whose true disparity is known.

It is synthesized like the training data (`any2bokeh.data`, nothing downloaded) and written as an
ordinary input, `demo.mp4` with `demo.disparity.npy` beside it (and `demo.focus.json`: the focus
point and the target's true d_f per frame), so the demo runs the same path as a
real video. Its focus point sits on the scene's target object on the first frame.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

DEMO_NAME = "demo"
DEMO_FRAMES, DEMO_HEIGHT, DEMO_WIDTH, DEMO_FPS = 24, 256, 448, 12


def write_demo_clip(folder: str | Path, seed: int = 0) -> tuple[Path, list[float]]:
    """Write demo.mp4 and demo.disparity.npy into `folder` (once); returns the mp4 and a focus point [x, y]."""
    from any2bokeh.data import (
        ProceduralBackgrounds,
        ProceduralForegrounds,
        SceneConfig,
        SyntheticBokehDataset,
    )
    from any2bokeh.io import write_mp4
    from any2bokeh.utils.atomic import write_json

    folder = Path(folder)
    video, disparity_path, point_path = (
        folder / f"{DEMO_NAME}.mp4",
        folder / f"{DEMO_NAME}.disparity.npy",
        folder / f"{DEMO_NAME}.focus.json",
    )
    if video.is_file() and disparity_path.is_file() and point_path.is_file():
        return video, json.loads(point_path.read_text())["point"]
    dataset = SyntheticBokehDataset(
        ProceduralForegrounds(num_clips=4, size=DEMO_HEIGHT, num_frames=DEMO_FRAMES, seed=seed),
        ProceduralBackgrounds(num_images=4, size=(DEMO_HEIGHT, DEMO_WIDTH), seed=seed),
        split="test",
        size=1,
        num_frames=DEMO_FRAMES,
        height=DEMO_HEIGHT,
        width=DEMO_WIDTH,
        seed=seed,
        scene=SceneConfig(min_objects=2, max_objects=2),
    )
    sample = dataset[0]
    # the target's pixel nearest its centroid on frame 0 (a concave silhouette may not cover its centroid)
    mask = sample["subject_mask"][0, 0] > 0.5
    rows, cols = torch.nonzero(mask, as_tuple=True)
    nearest = ((rows - rows.float().mean()) ** 2 + (cols - cols.float().mean()) ** 2).argmin()
    point = [(float(cols[nearest]) + 0.5) / DEMO_WIDTH, (float(rows[nearest]) + 0.5) / DEMO_HEIGHT]

    frames = (sample["aif"].permute(0, 2, 3, 1).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    folder.mkdir(parents=True, exist_ok=True)
    # each file under a temporary name first; the focus file, written last, marks the clip complete
    np.save(folder / ".demo.disparity.partial.npy", sample["disparity"][:, 0].numpy())
    (folder / ".demo.disparity.partial.npy").replace(disparity_path)
    write_mp4(video, frames, DEMO_FPS)
    write_json(point_path, {"point": point, "true_disp_focus": [round(float(v), 6) for v in sample["disp_focus"]]})
    return video, point
