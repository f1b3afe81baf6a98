"""Focus curves: a tracked point, a folder of masks, a value; gap filling and smoothing."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from any2bokeh.inference.focus import fill_gaps, focus_curve, load_masks, mask_focus, point_focus, smooth_curve
from any2bokeh.inference.tracking import TrackerConfig, track_subject

HEIGHT, WIDTH, RADIUS = 96, 128, 14


def _texture(generator, channels, height, width, cells):
    """Smooth noise plus fine noise: something for the optical flow to hold on to."""
    coarse = F.interpolate(torch.rand(1, channels, cells, cells, generator=generator), size=(height, width), mode="bilinear")
    return (0.5 * coarse + 0.5 * torch.rand(1, channels, height, width, generator=generator))[0]


def disc_clip(num_frames=24, seed=0):
    """A textured disc crossing a panning textured background, in front of a textured square.

    The disc (disparity 0.70 -> 0.85, nearer than everything) moves left to right on a sine
    path; the square (disparity 0.5) moves right to left, so the disc passes in front of it.
    The background pans 1 px per frame with disparity 0.15..0.35. Returns frames [T, 3, H, W],
    disparity [T, H, W], the disc's and the square's mean disparity [T] and their masks.
    """
    g = torch.Generator().manual_seed(seed)
    wide = WIDTH + num_frames
    background = _texture(g, 3, HEIGHT, wide, 8)
    background_disp = 0.15 + 0.2 * _texture(g, 1, HEIGHT, wide, 4)[0]
    disc_rgb, square_rgb = _texture(g, 3, 2 * RADIUS + 1, 2 * RADIUS + 1, 4), _texture(g, 3, 24, 24, 4)
    disc_relief = 0.01 * torch.rand(2 * RADIUS + 1, 2 * RADIUS + 1, generator=g)
    rows, cols = torch.meshgrid(torch.arange(HEIGHT).float(), torch.arange(WIDTH).float(), indexing="ij")
    frames, disparity, disc_truth, square_truth, disc_masks, square_masks = [], [], [], [], [], []
    for t in range(num_frames):
        s = t / (num_frames - 1)
        image = background[:, :, t : t + WIDTH].clone()
        disp = background_disp[:, t : t + WIDTH].clone()
        # The square: 24 px, moving right to left at mid height.
        top, left = 36, round(96 - 64 * s)
        square = (rows >= top) & (rows < top + 24) & (cols >= left) & (cols < left + 24)
        image[:, top : top + 24, left : left + 24] = square_rgb
        disp[square] = 0.5
        # The disc, textured in its own coordinates so the texture moves with it.
        cx, cy = 24 + s * (WIDTH - 48), HEIGHT / 2 + 15 * math.sin(2 * math.pi * s)
        disc = (cols - cx) ** 2 + (rows - cy) ** 2 <= RADIUS**2
        tex_rows = (rows - cy).round().long().clamp(-RADIUS, RADIUS) + RADIUS
        tex_cols = (cols - cx).round().long().clamp(-RADIUS, RADIUS) + RADIUS
        image = torch.where(disc, disc_rgb[:, tex_rows, tex_cols], image)
        disp = torch.where(disc, 0.7 + 0.15 * s + disc_relief[tex_rows, tex_cols], disp)
        square &= ~disc
        frames.append(image)
        disparity.append(disp)
        disc_truth.append(disp[disc].mean())
        square_truth.append(disp[square].mean())
        disc_masks.append(disc)
        square_masks.append(square)
    stack = torch.stack
    return stack(frames), stack(disparity), stack(disc_truth), stack(square_truth), stack(disc_masks), stack(square_masks)


def _disc_centre(t, num_frames=24):
    s = t / (num_frames - 1)
    return [(24 + s * (WIDTH - 48)) / WIDTH, (HEIGHT / 2 + 15 * math.sin(2 * math.pi * s)) / HEIGHT]


@pytest.fixture(scope="module")
def clip():
    return disc_clip()


@pytest.mark.parametrize("start", [0, 11, 23])
def test_tracker_follows_a_textured_disc_and_its_disparity(clip, start):
    frames, disparity, disc_truth, _, disc_masks, _ = clip
    track = track_subject(frames, disparity, _disc_centre(start), start)
    assert bool(track.found.all())
    iou = (track.masks & disc_masks).sum((1, 2)) / (track.masks | disc_masks).sum((1, 2))
    assert iou.min() > 0.8, iou
    curve = focus_curve({"point": _disc_centre(start), "frame": start}, disparity, frames)
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
    track = track_subject(big, disparity, _disc_centre(0), 0, TrackerConfig(max_size=128))
    assert track.masks.shape == (24, HEIGHT, WIDTH)
    curve = point_focus(big, disparity, _disc_centre(0), tracker=TrackerConfig(max_size=128))
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
        Image.fromarray(np.kron(mask, np.ones((2, 2), dtype=bool)).astype(np.uint8) * 255).save(folder / f"frame_{t}.png")
    curve = mask_focus(disparity, folder, smooth=0)
    seen = [disparity[t][torch.from_numpy(labels[t] == 1)].mean() for t in (0, 1, 4, 5)]
    expected = torch.stack([seen[0], seen[1], seen[1] + (seen[2] - seen[1]) / 3, seen[1] + 2 * (seen[2] - seen[1]) / 3, seen[2], seen[3]])
    torch.testing.assert_close(curve, expected)


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
