import math

import pytest
import torch

from any2bokeh.data.disparity import normalize_disparity, subject_focus


def test_normalize_spans_the_whole_clip_not_each_frame():
    # Frame 0 spans disparities 2..4, frame 1 only 4..6: one affine map for both frames.
    disparity = torch.tensor([[[2.0, 4.0]], [[4.0, 6.0]]], dtype=torch.float64)  # [2, 1, 2]
    out = normalize_disparity(disparity)
    assert out.dtype == torch.float32 and out.shape == disparity.shape
    assert torch.equal(out, torch.tensor([[[0.0, 0.5]], [[0.5, 1.0]]]))


def test_normalize_keeps_nearest_at_one_and_is_affine_invariant():
    disparity = torch.rand(3, 1, 5, 7, generator=torch.Generator().manual_seed(0))
    out = normalize_disparity(disparity)
    assert out.min() == 0 and out.max() == 1
    assert out.flatten().argmax() == disparity.flatten().argmax()  # 1 = nearest (largest disparity)
    torch.testing.assert_close(normalize_disparity(3.0 * disparity + 11.0), out)


def test_normalize_constant_map_gives_zeros():
    out = normalize_disparity(torch.full((2, 4, 4), 0.7))
    assert out.dtype == torch.float32 and torch.equal(out, torch.zeros(2, 4, 4))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_normalize_names_the_first_bad_frame(bad):
    disparity = torch.rand(4, 3, 3)
    disparity[2, 1, 1] = bad
    disparity[3, 0, 0] = bad
    with pytest.raises(ValueError, match="frame 2"):
        normalize_disparity(disparity)


def test_subject_focus_is_the_weighted_mean_per_frame():
    disparity = torch.tensor([[[0.2, 0.4], [0.6, 0.8]], [[1.0, 0.0], [0.0, 0.0]]])  # [2, 2, 2]
    weights = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.5, 0.5], [0.0, 0.0]]])
    focus = subject_focus(disparity, weights)
    assert focus.dtype == torch.float32 and focus.shape == (2,)
    torch.testing.assert_close(focus, torch.tensor([0.5, 0.5]))
    # The channel-first layout [T, 1, H, W] gives the same, in any mix.
    torch.testing.assert_close(subject_focus(disparity[:, None], weights), focus)
    torch.testing.assert_close(subject_focus(disparity, weights[:, None]), focus)


def test_subject_focus_of_an_empty_mask_is_nan():
    disparity = torch.rand(3, 4, 4)
    weights = torch.zeros(3, 4, 4)
    weights[1, 2, 3] = 1.0
    focus = subject_focus(disparity, weights)
    assert torch.isnan(focus[0]) and torch.isnan(focus[2])
    assert focus[1] == disparity[1, 2, 3]


@pytest.mark.parametrize(
    "disparity, weights",
    [
        (torch.rand(2, 4, 4), torch.rand(2, 4, 5)),
        (torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)),
        (torch.rand(4, 4), torch.rand(4, 4)),
    ],
)
def test_subject_focus_rejects_mismatched_shapes(disparity, weights):
    with pytest.raises(ValueError, match="shape|same frames"):
        subject_focus(disparity, weights)
