"""Steady depth: per-frame scale/shift distortions of a known disparity are removed frame to frame."""

import numpy as np
import pytest
import torch

from any2bokeh.data.disparity import normalize_disparity
from any2bokeh.inference.steady_depth import robust_affine, stabilize_disparity

T, H, W = 12, 96, 128


def scene(seed=0):
    """A textured background (a disparity ramp) and a near block moving right 2 px per frame.

    Returns frames uint8 [T, H, W, 3], the true disparity [T, H, W] and the block's masks [T, H, W].
    """
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    block = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    ramp = np.tile(np.linspace(0.1, 0.5, W), (H, 1))
    frames, disparity, masks = [], [], []
    for t in range(T):
        frame, depth, mask = background.copy(), ramp.copy(), np.zeros((H, W), bool)
        x = 20 + 2 * t
        frame[32:64, x : x + 32], depth[32:64, x : x + 32], mask[32:64, x : x + 32] = block, 0.9, True
        frames.append(frame), disparity.append(depth), masks.append(mask)
    return np.stack(frames), torch.tensor(np.stack(disparity)), torch.tensor(np.stack(masks))


def subject_focus(disparity, masks):
    """d_f per frame after the clip's min-max: the mean normalised disparity under the subject."""
    normalised = normalize_disparity(disparity)
    return torch.stack([normalised[t][masks[t]].mean() for t in range(len(masks))])


def flicker(curve):
    return float((curve[1:] - curve[:-1]).abs().mean())


def test_random_scale_and_shift_per_frame_is_removed():
    frames, truth, masks = scene()
    rng = np.random.default_rng(1)
    scales, shifts = rng.uniform(0.6, 1.4, T), rng.uniform(-0.3, 0.3, T)
    distorted = torch.stack([scales[t] * truth[t] + shifts[t] for t in range(T)])
    distorted = distorted + 0.005 * torch.randn(
        distorted.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    steady, report = stabilize_disparity(distorted.float(), frames)
    before, after = flicker(subject_focus(distorted, masks)), flicker(subject_focus(steady, masks))
    assert before > 5 * after, (before, after)
    assert report["flicker"]["after"] * 5 < report["flicker"]["before"] and report["fallback_frames"] == []
    # the aligned maps are the truth up to one affine map for the whole clip
    a, b = robust_affine(steady.flatten().double().numpy(), truth.flatten().numpy())
    assert float((a * steady.double() + b - truth).abs().mean()) < 0.01


def test_an_undistorted_clip_is_left_as_it_is():
    frames, truth, masks = scene(seed=3)
    steady, report = stabilize_disparity(truth.float(), frames)
    torch.testing.assert_close(steady, truth.float(), atol=2e-3, rtol=0)
    # what differs between its frames is the moving block's outline, under 2 % of the range
    assert report["flicker"]["after"] <= report["flicker"]["before"] < 0.02


def test_robust_affine_ignores_outliers():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 1000)
    y = 2 * x + 0.5
    y[:100] = rng.uniform(-5, 5, 100)  # 10 % of the pixels moved
    assert robust_affine(x, y) == pytest.approx((2.0, 0.5), abs=1e-6)


def test_the_steadied_render_follows_the_undistorted_one():
    """RM of the classical render against the render of the true disparity: the breathing blur is removed."""
    from any2bokeh.inference.renderers import ClassicalRenderer
    from any2bokeh.metrics.functional import rm

    frames, truth, masks = scene()
    rng = np.random.default_rng(1)
    scales, shifts = rng.uniform(0.6, 1.4, T), rng.uniform(-0.3, 0.3, T)
    distorted = torch.stack([scales[t] * truth[t] + shifts[t] for t in range(T)])
    noise = torch.randn(distorted.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    distorted = (distorted + 0.005 * noise).float()
    steady, _ = stabilize_disparity(distorted, frames)
    renderer = ClassicalRenderer()
    video = torch.from_numpy(frames).permute(0, 3, 1, 2)

    def render(disparity):
        normalised = normalize_disparity(disparity.double()).float()
        out = renderer(video, normalised[:, None], subject_focus(disparity, masks).float(), torch.full((T,), 24.0))
        return out.float()[None] / 255  # [1, T, 3, H, W]

    reference = render(truth)
    before, after = float(rm(render(distorted), reference)), float(rm(render(steady), reference))
    print(f"RM against the undistorted render: distorted {before:.2e}, steady {after:.2e}")
    assert after * 3 < before, (before, after)
