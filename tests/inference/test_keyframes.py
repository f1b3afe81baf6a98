"""Rack focus and K keyframes: values computed by hand."""

import numpy as np
import pytest
import torch
from PIL import Image

from any2bokeh.inference.keyframes import focus_keyframes, k_curve, resolve_focus
from tests.helpers.focus_clips import disc_centre, disc_clip

FLAT = torch.zeros(20, 4, 4)  # value keyframes do not read the disparity, only its frame count


def test_value_keyframes_ease_over_the_transition_ending_on_each_keyframe():
    keyframes = [{"frame": 0, "value": 0.2}, {"frame": 10, "value": 0.6}, {"frame": 14, "value": 0.4}]
    curve = focus_keyframes(keyframes, FLAT, transition=4)
    # smoothstep(u) = 3u² - 2u³: 0.15625 at u = 1/4, 0.5 at 1/2, 0.84375 at 3/4.
    expected = [0.2] * 7 + [0.2625, 0.4, 0.5375, 0.6] + [0.56875, 0.5, 0.43125] + [0.4] * 6
    torch.testing.assert_close(curve, torch.tensor(expected))


def test_other_eases_and_a_cut():
    keyframes = [{"frame": 2, "value": 0.2}, {"frame": 6, "value": 0.6}]
    # The first keyframe holds before its frame; cosine ease ½(1 - cos πu) over frames 2..6.
    cosine = focus_keyframes(keyframes, FLAT[:8], transition=4, ease="cosine")
    c = 0.5 * (1 - np.cos(np.pi * np.array([0.25, 0.5, 0.75])))
    torch.testing.assert_close(cosine, torch.tensor([0.2, 0.2, 0.2, *(0.2 + 0.4 * c), 0.6, 0.6], dtype=torch.float32))
    linear = focus_keyframes(keyframes, FLAT[:8], transition=2, ease="linear")
    torch.testing.assert_close(linear, torch.tensor([0.2, 0.2, 0.2, 0.2, 0.2, 0.4, 0.6, 0.6]))
    cut = focus_keyframes(keyframes, FLAT[:8], transition=0)
    torch.testing.assert_close(cut, torch.tensor([0.2] * 6 + [0.6] * 2))
    # A transition longer than the gap starts on the earlier keyframe's frame.
    short = focus_keyframes(keyframes, FLAT[:8], transition=10, ease="linear")
    torch.testing.assert_close(short, torch.tensor([0.2, 0.2, 0.2, 0.3, 0.4, 0.5, 0.6, 0.6]))


def test_mask_keyframe_follows_its_subject_then_hands_over(tmp_path):
    # The subject's disparity ramps 0.50 -> 0.69 (a ramp passes the smoothing unchanged).
    disparity = torch.zeros(20, 8, 8)
    disparity[:, 2:6, 2:6] = (0.5 + 0.01 * torch.arange(20.0)).view(20, 1, 1)
    (tmp_path / "masks").mkdir()
    for t in range(20):
        label = np.zeros((8, 8), dtype=np.uint8)
        label[2:6, 2:6] = 3
        image = Image.fromarray(label, mode="P")
        image.putpalette([0, 0, 0] * 3 + [255, 0, 0] + [0] * 756)
        image.save(tmp_path / "masks" / f"{t:05d}.png")
    keyframes = [{"frame": 0, "mask": str(tmp_path / "masks"), "object_id": 3}, {"frame": 12, "value": 0.1}]
    curve = resolve_focus({"keyframes": keyframes, "transition": 4, "ease": "linear"}, disparity)
    subject = 0.5 + 0.01 * torch.arange(20.0)
    w = torch.tensor([0.0] * 8 + [0.0, 0.25, 0.5, 0.75] + [1.0] * 8)
    torch.testing.assert_close(curve, (1 - w) * subject + w * 0.1)


def test_point_keyframe_tracks_from_its_own_frame():
    frames, disparity, disc_truth, *_ = disc_clip()
    keyframes = [{"frame": 0, "value": 0.3}, {"frame": 12, "point": disc_centre(12)}]
    curve = focus_keyframes(keyframes, disparity, frames, transition=6, ease="linear")
    assert torch.allclose(curve[:6], torch.tensor(0.3))
    # From the point's frame on, the focus is the disc's disparity, tracked from frame 12.
    assert (curve[12:] - disc_truth[12:]).abs().max() < 0.02
    w = torch.arange(1, 6) / 6
    assert ((curve[7:12] - ((1 - w) * 0.3 + w * disc_truth[7:12])).abs() < 0.02).all()


def test_k_from_a_number_or_keyframes():
    torch.testing.assert_close(k_curve(16, 3), torch.tensor([16.0, 16.0, 16.0]))
    # Held before the first keyframe and after the last, linear in between.
    curve = k_curve([{"frame": 2, "k": 4}, {"frame": 6, "k": 32}, {"frame": 8, "k": 0}], 11)
    torch.testing.assert_close(curve, torch.tensor([4.0, 4, 4, 11, 18, 25, 32, 16, 0, 0, 0]))


@pytest.mark.parametrize(
    "k,match",
    [
        (-1, "K must be a finite number >= 0"),
        (
            [{"frame": 0, "k": 4}, {"frame": 5, "k": -2}],
            r"K keyframe 1 \(frame 5\): k must be a finite number >= 0, got -2",
        ),
        ([{"frame": 4, "k": 4}, {"frame": 2, "k": 8}], r"K keyframe 1 \(frame 2\) comes before keyframe 0 \(frame 4\)"),
        ([{"frame": 4, "k": 4}, {"frame": 4, "k": 8}], r"K keyframe 1 \(frame 4\) repeats keyframe 0"),
        ([{"frame": 0, "k": 4, "speed": 2}], r"K keyframe 0 \(frame 0\) must hold 'frame' and 'k' only"),
        ([{"frame": 0}], r"K keyframe 0 \(frame 0\) must hold 'frame' and 'k'"),
        ([{"frame": 30, "k": 4}], r"K keyframe 0 \(frame 30\) lies past the video's last frame 19"),
        ([{"frame": 1.5, "k": 4}], r"K keyframe 0: 'frame' must be an int"),
        ([], "non-empty list"),
    ],
)
def test_bad_k_is_named(k, match):
    with pytest.raises(ValueError, match=match):
        k_curve(k, 20)


@pytest.mark.parametrize(
    "keyframes,match",
    [
        (
            [{"frame": 0, "value": 0.2}, {"frame": 5, "value": 1.5}],
            r"focus keyframe 1 \(frame 5\) value must be a normalized disparity in \[0, 1\], got 1.5",
        ),
        ([{"frame": 0, "value": -0.1}], r"focus keyframe 0 \(frame 0\) value must be"),
        (
            [{"frame": 5, "value": 0.2}, {"frame": 3, "value": 0.4}],
            r"focus keyframe 1 \(frame 3\) comes before keyframe 0",
        ),
        ([{"frame": 5, "value": 0.2}, {"frame": 5, "value": 0.4}], r"focus keyframe 1 \(frame 5\) repeats keyframe 0"),
        ([{"frame": 0, "value": 0.2, "k": 4}], r"focus keyframe 0 \(frame 0\): unknown or mixed keys \['k'\]"),
        ([{"frame": 0, "value": 0.2, "point": [0.5, 0.5]}], r"focus keyframe 0 \(frame 0\) must set exactly one of"),
        ([{"frame": 0}], r"focus keyframe 0 \(frame 0\) must set exactly one of"),
        ([{"value": 0.2}], r"focus keyframe 0: 'frame' must be an int"),
        ([{"frame": 0, "point": [0.5, 0.5]}], r"focus keyframe 0 \(frame 0\): a focus point needs the video's frames"),
    ],
)
def test_bad_focus_keyframes_are_named(keyframes, match):
    with pytest.raises(ValueError, match=match):
        focus_keyframes(keyframes, FLAT)


def test_focus_settings_are_checked():
    with pytest.raises(ValueError, match="transition must be an int >= 0"):
        focus_keyframes([{"frame": 0, "value": 0.2}], FLAT, transition=-1)
    with pytest.raises(ValueError, match="ease must be one of"):
        focus_keyframes([{"frame": 0, "value": 0.2}], FLAT, ease="bounce")
    with pytest.raises(ValueError, match=r"with keyframes, set the focus inside each keyframe; got also \['value'\]"):
        resolve_focus({"keyframes": [{"frame": 0, "value": 0.2}], "value": 0.3}, FLAT)
    # Unset keys (None, as a config leaves them) do not count.
    single = resolve_focus({"value": 0.3, "point": None, "keyframes": None}, FLAT)
    torch.testing.assert_close(single, torch.full((20,), 0.3))


def test_a_rack_focus_between_two_subjects_a_segmenter_finds():
    """Text and box keyframes get their subjects' masks from `segment` (a stand-in for SAM here)."""
    disparity = torch.full((12, 8, 8), 0.1)
    disparity[:, :4] = 0.8  # the man: the top half
    disparity[:, 4:, :2] = 0.4  # the dog: the bottom-left corner
    regions = {"the man": (slice(None), slice(0, 4)), "box": (slice(None), slice(4, 8), slice(0, 2))}
    asked = []

    def segment(spec):
        asked.append(dict(spec))
        masks = torch.zeros(12, 8, 8)
        masks[regions["the man" if "text" in spec else "box"]] = 1.0
        return masks

    keyframes = [{"frame": 0, "text": "the man"}, {"frame": 8, "box": [0.0, 0.5, 0.25, 1.0]}]
    curve = resolve_focus({"keyframes": keyframes, "transition": 4}, disparity, segment=segment, smooth=0)
    torch.testing.assert_close(curve[:4], torch.full((4,), 0.8))
    torch.testing.assert_close(curve[8:], torch.full((4,), 0.4))
    assert asked == [{"text": "the man"}, {"box": [0.0, 0.5, 0.25, 1.0], "frame": 8}]
    with pytest.raises(ValueError, match=r"focus keyframe 0 \(frame 0\): focus.text needs segmenter="):
        resolve_focus({"keyframes": keyframes}, disparity)
