"""Prompted segmentation through a clip with tiny random SAM 2 and SAM 3 video models written in the hub layout."""

import json

import numpy as np
import pytest
import torch

from any2bokeh.inference.segmentation import Prompt, Segmenter, model_type
from tests.helpers.sam_files import write_tiny_sam2_video, write_tiny_sam3_video

T, H, W = 6, 48, 64


def clip(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (T, H, W, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def sam2(tmp_path_factory):
    return Segmenter(write_tiny_sam2_video(tmp_path_factory.mktemp("sam2")))


@pytest.fixture(scope="module")
def sam3(tmp_path_factory):
    return Segmenter(write_tiny_sam3_video(tmp_path_factory.mktemp("sam3")))


@pytest.mark.parametrize(
    "prompt", [Prompt(point=(0.4, 0.5), frame=2), Prompt(box=(0.2, 0.2, 0.6, 0.8), frame=0)], ids=["point", "box"]
)
def test_sam2_tracks_a_point_or_box_forwards_and_backwards_over_every_frame(sam2, prompt):
    done = []
    masks = sam2(clip(), prompt, progress=lambda d, t: done.append((d, t)))
    assert masks.shape == (T, H, W) and masks.dtype == torch.float32
    assert float(masks.min()) >= 0 and float(masks.max()) <= 1
    # every frame was segmented once: the prompt's frame, those after it and those before it
    assert done[-1] == (T, T) and len(done) == T + (1 if prompt.frame > 0 else 0)
    # soft masks: the sigmoid of the logits, not a binary threshold
    assert ((masks > 0.01) & (masks < 0.99)).any()


def test_sam3_finds_the_concept_on_every_frame_and_keeps_one_subject(sam3):
    done = []
    masks = sam3(clip(), Prompt(text="the block"), progress=lambda d, t: done.append((d, t)))
    assert masks.shape == (T, H, W) and done[-1] == (T, T)
    assert set(torch.unique(masks).tolist()) <= {0.0, 1.0} and masks.sum() > 0


def test_a_sam3_folder_also_tracks_points_and_boxes_through_its_tracker(sam3):
    from transformers import Sam3TrackerVideoModel

    masks = sam3(clip(), Prompt(point=(0.4, 0.5), frame=3))
    assert masks.shape == (T, H, W) and ((masks > 0.01) & (masks < 0.99)).any()
    assert isinstance(sam3._visual()[1], Sam3TrackerVideoModel)
    assert sam3(clip(), Prompt(box=(0.2, 0.2, 0.6, 0.8))).shape == (T, H, W)


def test_each_model_takes_its_own_prompts(sam2, sam3):
    assert sam2.prompts == ("point", "box") and sam3.prompts == ("text", "point", "box")
    with pytest.raises(ValueError, match="SAM 3"):
        sam2(clip(), Prompt(text="the block"))
    with pytest.raises(ValueError, match="past the video's last frame"):
        sam2(clip(), Prompt(point=(0.5, 0.5), frame=T))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one"),
        ({"text": "a", "point": (0.5, 0.5)}, "exactly one"),
        ({"text": "  "}, "non-empty"),
        ({"point": (1.5, 0.5)}, r"focus.point must be 2 numbers in \[0, 1\]"),
        ({"box": (0.6, 0.2, 0.4, 0.8)}, "x0 < x1"),
        ({"point": (0.5, 0.5), "frame": -1}, "focus.frame"),
    ],
)
def test_bad_prompts_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Prompt(**kwargs)


def test_missing_files_and_other_models_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*facebook/sam3"):
        model_type(tmp_path / "nowhere")
    folder = write_tiny_sam2_video(tmp_path / "sam2")
    assert model_type(folder) == "sam2_video"
    (folder / "model.safetensors").rename(tmp_path / "weights")
    with pytest.raises(FileNotFoundError, match="no weights"):
        model_type(folder)
    (tmp_path / "weights").rename(folder / "model.safetensors")
    (folder / "processor_config.json").rename(tmp_path / "processor")
    with pytest.raises(FileNotFoundError, match="no processor files"):
        model_type(folder)
    (tmp_path / "processor").rename(folder / "processor_config.json")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "depth_anything"}))
    with pytest.raises(ValueError, match="'depth_anything' model; expected a SAM 2 or SAM 3 video model"):
        model_type(folder)


def test_a_concept_found_on_no_frame_is_an_error_naming_it(tmp_path):
    folder = write_tiny_sam3_video(tmp_path / "sam3")
    config = json.loads((folder / "config.json").read_text())
    # no detection scores above 1: SAM 3 finds nothing
    config.update(score_threshold_detection=1.1, new_det_thresh=1.1)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="finds no 'the unicorn' on any frame"):
        Segmenter(folder)(clip(), Prompt(text="the unicorn"))
