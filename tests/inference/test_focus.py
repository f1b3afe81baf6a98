"""Focus curves: a tracked point, a folder of masks, a value; gap filling and smoothing."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from any2bokeh.inference.focus import fill_gaps, focus_curve, load_masks, mask_focus, point_focus, smooth_curve
from any2bokeh.inference.tracking import TrackerConfig, track_subject
from tests.helpers.focus_clips import HEIGHT, WIDTH, disc_centre, disc_clip


@pytest.fixture(scope="module")
def clip():
    return disc_clip()


@pytest.mark.parametrize("start", [0, 11, 23])
def test_tracker_follows_a_textured_disc_and_its_disparity(clip, start):
    frames, disparity, disc_truth, _, disc_masks, _ = clip
    track = track_subject(frames, disparity, disc_centre(start), start)
    assert bool(track.found.all())
    iou = (track.masks & disc_masks).sum((1, 2)) / (track.masks | disc_masks).sum((1, 2))
    assert iou.min() > 0.8, iou
    curve = focus_curve({"point": disc_centre(start), "frame": start}, disparity, frames)
    assert curve.shape == (24,) and curve.dtype == torch.float32
    assert (curve - disc_truth).abs().max() < 0.02


def test_tracker_keeps_a_subject_that_a_nearer_one_passes_in_front_of(clip):
    frames, disparity, _, square_truth, _, square_masks = clip
    track = track_subject(frames, disparity, [(96 + 12) / WIDTH, 48 / HEIGHT], 0)
    # The square never takes the disc's pixels, though the disc crosses it.
    assert not (track.masks & (disparity > 0.6)).any()
    iou = (track.masks & square_masks).sum((1, 2)) / (track.masks | square_masks).sum((1, 2))
    assert iou.min() > 0.7, iou
    curve = point_focus(frames, disparity, [(96 + 12) / WIDTH, 48 / HEIGHT])
    assert (curve - square_truth).abs().max() < 0.02


def test_tracker_works_at_a_working_size_and_with_uint8_frames(clip):
    frames, disparity, disc_truth, *_ = clip
    frames8 = (frames * 255).round().to(torch.uint8)
    big = F.interpolate(frames8.float(), scale_factor=2, mode="nearest").to(torch.uint8)  # [T, 3, 192, 256]
    track = track_subject(big, disparity, disc_centre(0), 0, TrackerConfig(max_size=128))
    assert track.masks.shape == (24, HEIGHT, WIDTH)
    curve = point_focus(big, disparity, disc_centre(0), tracker=TrackerConfig(max_size=128))
    assert (curve - disc_truth).abs().max() < 0.02


def test_bad_focus_points_are_named(clip):
    frames, disparity, *_ = clip
    with pytest.raises(ValueError, match=r"focus point \[1.2, 0.5\] lies outside the frame"):
        track_subject(frames, disparity, [1.2, 0.5])
    with pytest.raises(ValueError, match=r"focus point must be \[x, y\]"):
        track_subject(frames, disparity, [0.5])
    with pytest.raises(ValueError, match="frame must be an int in \\[0, 23\\]"):
        track_subject(frames, disparity, [0.5, 0.5], frame=24)
    # Disparity noise with no region that holds together: no subject under the point.
    noise = torch.rand(24, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match=r"focus point \[0.5, 0.5\] on frame 0 falls on no subject"):
        track_subject(frames, noise, [0.5, 0.5])
    with pytest.raises(ValueError, match="needs the video's frames"):
        focus_curve({"point": [0.5, 0.5]}, disparity)


def test_fill_gaps_interpolates_between_neighbours_and_holds_the_ends():
    nan = math.nan
    filled = fill_gaps(torch.tensor([nan, 0.2, nan, nan, 0.5, nan]))
    torch.testing.assert_close(filled, torch.tensor([0.2, 0.2, 0.3, 0.4, 0.5, 0.5]))
    with pytest.raises(ValueError, match="my masks: the subject is absent on every frame"):
        fill_gaps(torch.full((4,), nan), "my masks")


def test_smoothing_keeps_ramps_and_drops_a_single_frame_outlier():
    ramp = torch.linspace(0.2, 0.8, 20, dtype=torch.float64)
    torch.testing.assert_close(smooth_curve(ramp, 2), ramp)
    spiky = ramp.clone()
    spiky[7] = 0.95
    # The spike is gone: what is left is less than one frame's step of the ramp.
    assert (smooth_curve(spiky, 2) - ramp).abs().max() < (ramp[1] - ramp[0]) * 0.7
    jitter = 0.5 + 0.02 * torch.randn(60, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    smoothed = smooth_curve(jitter, 2)
    # Windows shrink towards the ends (the end frames stay as they are); inside, jitter drops.
    assert (smoothed[2:-2] - 0.5).std() < (jitter - 0.5).std() / 2
    with pytest.raises(ValueError, match="radius must be >= 0"):
        smooth_curve(ramp, -1)


def _write_palette_masks(folder, labels):
    """DAVIS-style masks: mode "P" PNGs whose pixel values are object ids."""
    folder.mkdir()
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * (768 - 12)
    for t, label in enumerate(labels):
        image = Image.fromarray(label.astype(np.uint8), mode="P")
        image.putpalette(palette)
        image.save(folder / f"{t:05d}.png")
    return folder


def _two_objects(num_frames=6):
    """Object 1 a box moving right, object 2 a fixed box; disparity ramps left to right."""
    labels = np.zeros((num_frames, 24, 32), dtype=np.uint8)
    for t in range(num_frames):
        labels[t, 4:10, 2 + 3 * t : 8 + 3 * t] = 1
        labels[t, 14:20, 20:28] = 2
    disparity = torch.linspace(0, 1, 32).expand(num_frames, 24, 32).clone()
    disparity += 0.01 * torch.arange(num_frames).view(-1, 1, 1)
    return labels, disparity


def test_mask_focus_on_davis_palette_pngs(tmp_path):
    labels, disparity = _two_objects()
    folder = _write_palette_masks(tmp_path / "masks", labels)
    assert Image.open(folder / "00000.png").mode == "P"
    for object_id in (1, 2):
        expected = torch.stack([disparity[t][torch.from_numpy(labels[t] == object_id)].mean() for t in range(6)])
        torch.testing.assert_close(mask_focus(disparity, folder, object_id, smooth=0), expected)
        curve = focus_curve({"mask": str(folder), "object_id": object_id}, disparity)
        torch.testing.assert_close(curve, expected)  # both are ramps: smoothing keeps them
    with pytest.raises(ValueError, match=r"hold objects \[1, 2\]: choose one with object_id"):
        mask_focus(disparity, folder)
    with pytest.raises(ValueError, match="empty on every frame: no frame shows object 7"):
        mask_focus(disparity, folder, 7)


def test_mask_focus_on_binary_pngs_fills_empty_frames_and_resizes(tmp_path):
    labels, disparity = _two_objects()
    folder = tmp_path / "binary"
    folder.mkdir()
    for t in range(6):
        mask = (labels[t] == 1) if t not in (2, 3) else np.zeros_like(labels[t], dtype=bool)
        # Twice the disparity's size: masks are resized to it.
        Image.fromarray(np.kron(mask, np.ones((2, 2), dtype=bool)).astype(np.uint8) * 255).save(
            folder / f"frame_{t}.png"
        )
    curve = mask_focus(disparity, folder, smooth=0)
    seen = [disparity[t][torch.from_numpy(labels[t] == 1)].mean() for t in (0, 1, 4, 5)]
    expected = torch.stack(
        [seen[0], seen[1], seen[1] + (seen[2] - seen[1]) / 3, seen[1] + 2 * (seen[2] - seen[1]) / 3, seen[2], seen[3]]
    )
    torch.testing.assert_close(curve, expected)


@pytest.mark.parametrize("on", [255, 1])
def test_binary_masks_need_no_object_id_and_ignore_one(tmp_path, on):
    """0/255 or 0/1 masks: every non-zero pixel is the subject, with or without an object id (DAVIS's default 1)."""
    labels, disparity = _two_objects()
    folder = tmp_path / "binary"
    folder.mkdir()
    for t in range(6):
        Image.fromarray((labels[t] == 2).astype(np.uint8) * on).save(folder / f"{t:05d}.png")
    expected = mask_focus(disparity, folder, smooth=0)
    for object_id in (1, 2, 7):
        torch.testing.assert_close(mask_focus(disparity, folder, object_id, smooth=0), expected)
    subject = torch.stack([disparity[t][torch.from_numpy(labels[t] == 2)].mean() for t in range(6)])
    torch.testing.assert_close(expected, subject)


def test_grey_label_maps_still_pick_their_object(tmp_path):
    labels, disparity = _two_objects()
    folder = tmp_path / "labels"
    folder.mkdir()
    for t in range(6):
        Image.fromarray(labels[t].astype(np.uint8)).save(folder / f"{t:05d}.png")  # mode L, ids 1 and 2
    one = torch.stack([disparity[t][torch.from_numpy(labels[t] == 1)].mean() for t in range(6)])
    torch.testing.assert_close(mask_focus(disparity, folder, 1, smooth=0), one)


def test_mask_folders_with_problems_are_named(tmp_path):
    labels, disparity = _two_objects()
    folder = _write_palette_masks(tmp_path / "short", labels[:5])
    with pytest.raises(ValueError, match=r"short holds 5 PNG masks, but the video has 6 frames"):
        load_masks(folder, 6, (24, 32))
    empty = _write_palette_masks(tmp_path / "empty", np.zeros_like(labels))
    with pytest.raises(ValueError, match=r"empty.* are empty on every frame"):
        mask_focus(disparity, empty)
    with pytest.raises(FileNotFoundError, match="nowhere does not exist"):
        mask_focus(disparity, tmp_path / "nowhere")


def test_focus_specs_are_checked():
    disparity = torch.rand(5, 8, 8)
    torch.testing.assert_close(focus_curve({"value": 0.25}, disparity), torch.full((5,), 0.25))
    with pytest.raises(ValueError, match=r"must be a normalized disparity in \[0, 1\], got 1.5"):
        focus_curve({"value": 1.5}, disparity)
    with pytest.raises(ValueError, match="exactly one of"):
        focus_curve({"value": 0.2, "point": [0.1, 0.1]}, disparity)
    with pytest.raises(ValueError, match=r"unknown or mixed keys \['object_id'\] for a value focus"):
        focus_curve({"value": 0.2, "object_id": 1}, disparity)
