"""The weighted overlap inference strategy (§3.5, eqs. 6-7)."""

import math

import pytest
import torch

from any2bokeh.inference import overlap_weights, overlap_windows, weighted_overlap, window_weights


@pytest.mark.parametrize("num_frames", [1, 7, 8, 9, 13, 50])
def test_identity_returns_the_input_exactly(num_frames):
    frames = torch.randn(2, num_frames, 3, 5, 4, generator=torch.Generator().manual_seed(num_frames))
    out = weighted_overlap(lambda x: x.clone(), frames, window=8, overlap=4)
    assert out.shape == frames.shape
    assert torch.equal(out, frames)


def _gamma(j, m):
    return 0.5 * (1 + math.cos(math.pi * j / m))


def _per_window_constant(num_frames, window, overlap):
    """weighted_overlap with an fn that returns 10·(k+1) on window k, and the windows it saw."""
    seen = []

    def fn(x):
        seen.append(len(seen))
        return torch.full_like(x, 10.0 * len(seen))

    out = weighted_overlap(fn, torch.zeros(1, num_frames, 1, dtype=torch.float64), window, overlap)
    return out[0, :, 0], len(seen)


def test_per_window_constant_gives_the_eq7_blend_on_13_frames():
    # window 8, overlap 4: windows start at 0, 4 and (aligned to the end) 5.
    out, calls = _per_window_constant(13, 8, 4)
    assert calls == 3
    c0, c1, c2 = 10.0, 20.0, 30.0
    expected = [c0] * 8 + [c1] * 4  # frames 0..11 before blending
    for j in range(4):  # window 1 overlaps window 0 on frames 4..7 (m = 4)
        expected[4 + j] = _gamma(j, 4) * c0 + (1 - _gamma(j, 4)) * c1
    for j in range(7):  # the last window starts at 5 and overlaps frames 5..11 (m = 7)
        expected[5 + j] = _gamma(j, 7) * expected[5 + j] + (1 - _gamma(j, 7)) * c2
    expected.append(c2)
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)


def test_per_window_constant_gives_the_eq7_blend_on_50_frames():
    starts = [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 42]
    out, calls = _per_window_constant(50, 8, 4)
    assert calls == len(starts)
    expected = [0.0] * 50
    end = 0
    for k, start in enumerate(starts):
        value = 10.0 * (k + 1)
        m = max(0, end - start)
        for t in range(start, start + 8):
            j = t - start
            expected[t] = _gamma(j, m) * expected[t] + (1 - _gamma(j, m)) * value if j < m else value
        end = start + 8
    torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-12)
    # In a regular overlap the ramp starts at the earlier window (γ_0 = 1) and is symmetric.
    assert out[8] == 20.0 and out[10] == pytest.approx(25.0)


def test_no_overlap_concatenates_the_windows():
    out, calls = _per_window_constant(16, 4, 0)
    assert calls == 4
    assert torch.equal(out, torch.tensor([10.0] * 4 + [20.0] * 4 + [30.0] * 4 + [40.0] * 4, dtype=torch.float64))


@pytest.mark.parametrize("window,overlap", [(1, 0), (3, 2), (8, 4), (8, 0), (8, 7), (16, 5)])
@pytest.mark.parametrize("num_frames", [1, 2, 7, 8, 9, 13, 25, 50])
def test_windows_cover_every_frame(num_frames, window, overlap):
    plan = overlap_windows(num_frames, window, overlap)
    covered = set()
    for span in plan:
        assert span.stop - span.start == min(window, num_frames)
        covered.update(range(span.start, span.stop))
    assert covered == set(range(num_frames))
    assert plan[0].start == 0 and plan[-1].stop == num_frames
    starts = [span.start for span in plan]
    assert starts == sorted(set(starts))
    # Every step but the last is the stride; the last may be shorter (aligned to the end).
    assert all(b - a == window - overlap for a, b in zip(starts[:-2], starts[1:-1]))
    weights = window_weights(num_frames, window, overlap)
    torch.testing.assert_close(weights.sum(0), torch.ones(num_frames, dtype=torch.float64))


def test_window_weights_match_weighted_overlap():
    num_frames, window, overlap = 21, 6, 2
    weights = window_weights(num_frames, window, overlap)
    per_window = torch.randn(weights.shape[0], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    calls = iter(per_window)
    out = weighted_overlap(
        lambda x: torch.full_like(x, float(next(calls))),
        torch.zeros(1, num_frames, dtype=torch.float64),
        window,
        overlap,
    )
    torch.testing.assert_close(out[0], per_window @ weights)


def test_overlap_weights_follow_eq7():
    gamma = overlap_weights(4, torch.float64)
    torch.testing.assert_close(
        gamma,
        torch.tensor(
            [1.0, 0.5 + 0.5 * math.cos(math.pi / 4), 0.5, 0.5 - 0.5 * math.cos(math.pi / 4)], dtype=torch.float64
        ),
    )
    assert overlap_weights(0).numel() == 0


def test_context_is_sliced_with_the_frames_and_outputs_may_change_shape():
    frames = torch.arange(13.0).view(1, 13, 1).expand(2, 13, 3)
    index = torch.arange(13).view(1, 13).expand(2, 13)
    windows = []

    def fn(x, index, k):
        windows.append(index[0].tolist())
        assert torch.equal(x[:, :, 0], index.float()) and torch.equal(k, 2 * index.float())
        return x[..., :1].repeat(1, 1, 5)  # [B, w, 3] -> [B, w, 5]

    done = []
    out = weighted_overlap(
        fn, frames, 8, 4, context={"index": index, "k": 2 * index.float()}, progress=lambda d, n: done.append((d, n))
    )
    assert windows == [list(range(0, 8)), list(range(4, 12)), list(range(5, 13))]
    assert done == [(1, 3), (2, 3), (3, 3)]
    assert out.shape == (2, 13, 5) and torch.equal(out, frames[..., :1].repeat(1, 1, 5))


@pytest.mark.parametrize(
    "window,overlap,match",
    [
        (0, 0, "window must be >= 1"),
        (8, 8, "0 <= overlap < window"),
        (8, -1, "0 <= overlap < window"),
        (4, 9, "overlap=9"),
    ],
)
def test_bad_arguments_are_named(window, overlap, match):
    with pytest.raises(ValueError, match=match):
        weighted_overlap(lambda x: x, torch.zeros(1, 10), window, overlap)


def test_bad_inputs_are_named():
    with pytest.raises(TypeError, match="window must be an int"):
        overlap_windows(10, 4.0, 1)
    with pytest.raises(ValueError, match="num_frames must be >= 1"):
        overlap_windows(0, 4, 1)
    with pytest.raises(ValueError, match=r"frames must be a tensor \[B, T"):
        weighted_overlap(lambda x: x, torch.zeros(10), 4, 1)
    with pytest.raises(ValueError, match=r"fn must map a window .* window 0:4"):
        weighted_overlap(lambda x: x[:, :2], torch.zeros(1, 10), 4, 1)
    with pytest.raises(ValueError, match=r"context\['d_f'\]"):
        weighted_overlap(lambda x, d_f: x, torch.zeros(1, 10), 4, 1, context={"d_f": torch.zeros(1, 9)})
