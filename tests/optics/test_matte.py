"""Matte-guided focus: the refined matte, the fill behind it, and a render that keeps the subject whole."""

import torch

from any2bokeh.inference.renderers import ClassicalRenderer
from any2bokeh.optics.matte import fill_behind, refine_matte, render_with_matte


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
