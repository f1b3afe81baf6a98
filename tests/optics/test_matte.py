"""Matte-guided focus: the refined matte, the fill behind it, and a render that keeps the subject whole."""

import torch

from any2bokeh.inference.renderers import ClassicalRenderer
from any2bokeh.optics.matte import fill_behind, fill_behind_far, refine_matte, render_with_matte


def test_the_refined_matte_moves_to_the_frames_edge():
    frame = torch.zeros(1, 3, 32, 32)
    frame[..., 16:] = 1.0  # the subject: the bright right half
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 13:] = 1.0  # a mask 3 px too wide, as a coarse segmentation is
    alpha = refine_matte(mask, frame, radius=4, eps=1e-4)
    # where the window sees the frame's edge, alpha follows the grey: the mask's overhang falls to about half
    assert float(alpha[..., 13:15].mean()) < 0.6 and float(alpha[..., 17:].mean()) > 0.9
    # away from any edge of the frame the matte is the mask
    assert float(alpha[..., 0:4].max()) < 1e-3


def test_fill_behind_keeps_known_pixels_and_fills_holes_from_around_them():
    values = torch.rand(1, 3, 24, 24)
    values[..., 8:16, 8:16] = 5.0  # what hides behind the subject: must not show
    known = torch.ones(1, 1, 24, 24)
    known[..., 8:16, 8:16] = 0
    filled = fill_behind(values, known)
    torch.testing.assert_close(filled[..., :8, :], values[..., :8, :])
    assert float(filled[..., 8:16, 8:16].max()) <= float(values[..., known[0, 0] > 0].max())


def test_the_disparity_behind_the_subject_is_the_far_side_of_its_surroundings():
    disparity = torch.full((1, 1, 24, 24), 0.1)  # the far background
    disparity[..., :, :8] = 0.7  # a nearer object left of the subject
    known = torch.ones(1, 1, 24, 24)
    known[..., 6:18, 8:16] = 0  # the subject's hole touches both
    far = fill_behind_far(disparity, known)
    torch.testing.assert_close(far[known > 0], disparity[known > 0])
    # the hole takes the background's disparity, never a mix with the nearer object's (the push-pull's average)
    torch.testing.assert_close(far[known == 0], torch.full((96,), 0.1))
    assert float(fill_behind(disparity, known)[known == 0].max()) > 0.15


def test_a_nearer_objects_blur_spreads_over_the_subject():
    """The subject behind a nearer, out-of-focus bar: the bar's blur covers its edge, as the lens shows it."""
    frame = torch.full((1, 3, 48, 48), 0.5)
    frame[..., 16:32, 12:32] = 0.0  # a black subject, on the focal plane
    frame[..., :, 32:36] = 1.0  # a white bar in front of it, out of focus
    disparity = torch.full((1, 1, 48, 48), 0.1)
    disparity[..., 16:32, 12:32] = 0.5
    disparity[..., :, 32:36] = 0.9
    mask = torch.zeros(1, 1, 48, 48)
    mask[..., 16:32, 12:32] = 1.0
    renderer = ClassicalRenderer(area=48 * 48)
    args = (frame, disparity, torch.tensor([0.5]), torch.tensor([12.0 * 1024 / 48]))
    plain, matted = renderer(*args), renderer(*args, matte=mask)
    edge = (slice(None), slice(None), slice(20, 28), slice(28, 32))  # the subject's pixels next to the bar
    inner = (slice(None), slice(None), slice(20, 28), slice(14, 20))  # far from it
    # the bar's white spreads over the subject's edge with the matte (without the spill it would stay black), at
    # least half as much as without the matte (the matte's dilated pixel next to the bar does not spread)
    spread = matted[edge].mean(dim=(0, 1, 2))  # by column, towards the bar
    assert float(spread[-1]) > 0.2 and bool((spread[1:] > spread[:-1]).all())
    assert float(matted[edge].mean()) > 0.5 * float(plain[edge].mean())
    assert float(matted[inner].abs().max()) < 1e-3  # the rest of the subject stays as it is


def _red_subject(size=48):
    frame = torch.full((1, 3, size, size), 0.5)
    frame[:, 0, 16:32, 16:32], frame[:, 1:, 16:32, 16:32] = 1.0, 0.0  # a red square on grey
    disparity = torch.full((1, 1, size, size), 0.2)  # the map misses the subject: all of it far
    mask = torch.zeros(1, 1, size, size)
    mask[..., 16:32, 16:32] = 1.0
    return frame, disparity, mask


def test_with_the_matte_the_subject_stays_sharp_and_its_colour_stays_out_of_the_bokeh():
    frame, disparity, mask = _red_subject()
    renderer = ClassicalRenderer(area=48 * 48)
    args = (frame, disparity, torch.tensor([0.9]), torch.tensor([24.0 * 1024 / 48]))
    plain, matted = renderer(*args), renderer(*args, matte=mask)
    inner = (slice(None), slice(None), slice(18, 30), slice(18, 30))
    # inside: the plain render blurs the subject (its disparity is wrong), the matte keeps it exactly
    assert float((plain[inner] - frame[inner]).abs().max()) > 0.1
    torch.testing.assert_close(matted[inner], frame[inner], atol=1e-3, rtol=0)
    # around: the plain render spreads red into the background, the matte's background is filled from grey
    ring = torch.ones(48, 48, dtype=torch.bool)
    ring[12:36, 12:36] = False
    red = lambda image: float((image[0, 0] - image[0, 1])[ring].abs().mean())  # noqa: E731
    assert red(plain) > 10 * red(matted)


def test_render_with_matte_returns_the_refined_alpha():
    frame, disparity, mask = _red_subject()
    out, alpha = render_with_matte(lambda images, disp: images, frame, disparity, mask)
    # a render that changes nothing leaves the frame as it is, whatever the matte
    torch.testing.assert_close(out, frame, atol=1e-5, rtol=0)
    assert alpha.shape == mask.shape and 0 <= float(alpha.min()) and float(alpha.max()) <= 1
