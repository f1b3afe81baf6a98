"""Clips, configs and sidecars of `predict.py` runs in tests: a drifting textured clip with a near block in its
disparity (`write_clip`), a composed config (`predict_config`), a video's sidecar (`read_sidecar`) and the status
of each video of a run (`run_statuses`)."""

import json
from pathlib import Path

import numpy as np

from any2bokeh.prediction import compose_predict_config
from tests.helpers.video_files import write_mp4, write_video_with_audio

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"


def clip_frames(num_frames=6, height=48, width=64, seed=0):
    """A textured clip, uint8 [T, H, W, 3], drifting by a pixel per frame."""
    rng = np.random.default_rng(seed)
    wide = rng.integers(0, 256, (height, width + num_frames, 3), dtype=np.uint8)
    return np.stack([wide[:, t : t + width] for t in range(num_frames)])


def clip_disparity(num_frames=6, height=48, width=64):
    """Two planes: a near block (raw 5) on a far background (raw 1), in arbitrary units."""
    disparity = np.ones((num_frames, height, width), dtype=np.float32)
    disparity[:, height // 4 : 3 * height // 4, width // 4 : width // 2] = 5.0
    return disparity


def write_clip(folder, name, num_frames=6, fps=10, disparity_frames=None, seed=0, audio=False):
    frames = clip_frames(num_frames, seed=seed)
    path = Path(folder) / f"{name}.mp4"
    (write_video_with_audio if audio else write_mp4)(path, frames, fps)
    np.save(Path(folder) / f"{name}.disparity.npy", clip_disparity(disparity_frames or num_frames))
    return path


def predict_config(output_dir, *overrides):
    return compose_predict_config(
        CONF, [f"output_dir={output_dir}", "trainer.enable_progress_bar=false", *overrides], log_dir=output_dir
    )


def read_sidecar(output_dir, name):
    return json.loads((Path(output_dir) / f"{name}.json").read_text())


def run_statuses(summary):
    return {row["name"]: (row["status"], row.get("reason") or "") for row in summary.rows}
