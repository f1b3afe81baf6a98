"""Real files drive the DataModule end to end: an mp4 video matte written with PyAV, an image-matte
folder and a background folder, decoded in DataLoader workers and rendered after transfer."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from any2bokeh.data import ImageBackgrounds, ImageMatteForegrounds, SyntheticBokehDataModule, VideoMatteForegrounds
from any2bokeh.data.dataset import BATCH_KEYS

_spec = importlib.util.spec_from_file_location(
    "video_files", Path(__file__).resolve().parents[1] / "helpers" / "video_files.py"
)
video_files = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(video_files)

RED, BLUE = (230, 20, 20), (20, 20, 230)


def red_square_clip(root: Path) -> Path:
    """One 6-frame mp4 matte: a red square (alpha 1) on black (alpha 0)."""
    rgb = np.zeros((6, 32, 32, 3), dtype=np.uint8)
    rgb[:] = RED
    alpha = np.zeros((6, 32, 32), dtype=np.uint8)
    alpha[:, 4:28, 4:28] = 255
    return video_files.write_videomatte_clip(root / "videomatte", "red", rgb, alpha)


def blue_backgrounds(root: Path) -> Path:
    folder = root / "backgrounds"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(np.full((48, 64, 3), BLUE, dtype=np.uint8)).save(folder / f"b{i}.png")
    return folder


def test_mp4_video_matte_drives_the_datamodule(tmp_path):
    dm = SyntheticBokehDataModule(
        VideoMatteForegrounds(red_square_clip(tmp_path)),
        ImageBackgrounds(blue_backgrounds(tmp_path)),
        num_frames=3,
        height=32,
        width=32,
        batch_size=2,
        num_workers=2,
        train_size=4,
        val_size=2,
        test_size=2,
        scene={"min_objects": 1, "max_objects": 2, "object_height": (0.5, 0.7)},
    )
    dm.setup("fit")
    batches = [dm.on_after_batch_transfer(b, 0) for b in dm.train_dataloader()]
    assert len(batches) == 2
    batch = batches[0]
    assert tuple(batch) == BATCH_KEYS and batch["aif"].shape == (2, 3, 3, 32, 32)
    # Inside the subject the frame shows the red matte, elsewhere the blue background.
    aif = (batch["aif"] + 1) / 2 * 255
    inside = (batch["subject_mask"] > 0.99).expand_as(aif)
    background = (batch["disparity"] == 0).expand_as(aif)
    assert inside.any() and background.any()
    red = torch.tensor(RED, dtype=torch.float32)[None, None, :, None, None].expand_as(aif)
    blue = torch.tensor(BLUE, dtype=torch.float32)[None, None, :, None, None].expand_as(aif)
    assert (aif[inside] - red[inside]).abs().mean() < 8
    assert (aif[background] - blue[background]).abs().mean() < 8


def test_image_mattes_with_a_video_matte_drive_the_datamodule(tmp_path):
    video_files.write_image_mattes(tmp_path / "am/original", tmp_path / "am/mask", n=3, size=(32, 48))
    foregrounds = [
        VideoMatteForegrounds(red_square_clip(tmp_path)),
        ImageMatteForegrounds(tmp_path / "am/original", tmp_path / "am/mask"),
    ]
    dm = SyntheticBokehDataModule(
        foregrounds,
        ImageBackgrounds(blue_backgrounds(tmp_path)),
        num_frames=2,
        height=32,
        width=32,
        batch_size=1,
        num_workers=0,
        train_size=2,
        val_size=8,
        test_size=2,
        scene={"min_objects": 4, "max_objects": 4},
    )
    assert len(dm.foregrounds) == 4
    dm.setup("validate")
    batches = [dm.on_after_batch_transfer(b, 0) for b in dm.val_dataloader()]
    for batch in batches:
        assert batch["bokeh"].shape == (1, 2, 3, 32, 32)
        assert torch.isfinite(batch["bokeh"]).all() and batch["bokeh"].abs().max() <= 1
    # The image mattes' random-colour textures show up: pixels far from both the red matte and
    # the blue background.
    aif = (torch.cat([b["aif"] for b in batches]) + 1) / 2 * 255  # [N, T, 3, H, W]
    distance = lambda colour: (aif - torch.tensor(colour, dtype=torch.float32)[:, None, None]).norm(dim=2)  # noqa: E731
    assert ((distance(RED) > 80) & (distance(BLUE) > 80)).float().mean() > 0.01


def test_a_corrupt_video_matte_is_named(tmp_path):
    root = red_square_clip(tmp_path)
    video_files.write_corrupt_mp4(root / "fgr" / "broken.mp4")
    video_files.write_corrupt_mp4(root / "pha" / "broken.mp4")
    dm = SyntheticBokehDataModule(
        VideoMatteForegrounds(root),
        ImageBackgrounds(blue_backgrounds(tmp_path)),
        num_frames=2,
        height=32,
        width=32,
        train_size=16,
        scene={"min_objects": 4, "max_objects": 4},
    )
    with pytest.raises(ValueError, match="broken"):
        for i in range(16):
            dm.dataset("train")[i]
