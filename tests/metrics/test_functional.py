"""The paper's metrics as plain functions, against values computed by hand."""

import math

import pytest
import torch
from torchmetrics.image import PeakSignalNoiseRatio

from any2bokeh.metrics import DisFlow, functional


def constant_video(values, size=(2, 2)):
    """[1, T, 3, H, W] whose frame t is `values[t]` everywhere."""
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1, 1).expand(1, len(values), 3, *size).clone()


def test_rm_on_a_three_frame_clip_by_hand():
    gt = torch.zeros(1, 3, 3, 2, 2)
    pred = torch.zeros(1, 3, 3, 2, 2)
    pred[0, 1, 0, 0, 0] = 0.3  # one of the 12 values of frame 1 rises, then falls back in frame 2
    gt[0, :, 1, 1, 1] = torch.tensor([0.1, 0.2, 0.4])  # the ground truth changes elsewhere
    # pair 0: |+0.3| at one value and |0 - 0.1| at another -> (0.3 + 0.1) / 12
    # pair 1: |-0.3| and |0 - 0.2| -> (0.3 + 0.2) / 12; RM = mean of the two = 0.9 / 24
    assert functional.rm(pred, gt).item() == pytest.approx(0.9 / 24, abs=1e-7)
    # per video over the frame axis: a second video with no change scores 0, the mean halves
    two = functional.per_video_rm(torch.cat([pred, gt]), torch.cat([gt, gt]))
    assert torch.allclose(two, torch.tensor([0.9 / 24, 0.0]), atol=1e-7)


def test_rm_needs_two_frames():
    with pytest.raises(ValueError, match="at least 2"):
        functional.rm(torch.zeros(1, 1, 3, 4, 4), torch.zeros(1, 1, 3, 4, 4))


def test_flow_difference_with_a_known_flow_field():
    def brightness_flow(first, second):
        # a uniform field: x = 10 x the change of mean brightness, y = 1
        change = (second - first).mean(dim=(1, 2, 3)) * 10
        return torch.stack([change, torch.ones_like(change)], 1)[:, :, None, None].expand(-1, 2, *first.shape[-2:])

    gt = constant_video([0.2, 0.4, 0.4])  # flows x: 2, 0
    pred = constant_video([0.2, 0.2, 0.5])  # flows x: 0, 3
    # |2 - 0| and |0 - 3| on x, 0 on y: pair means 1.0 and 1.5 -> 1.25
    assert functional.flow_difference(pred, gt, brightness_flow).item() == pytest.approx(1.25, abs=1e-5)


def test_flow_difference_rejects_a_flow_of_the_wrong_shape():
    video = torch.rand(1, 3, 3, 8, 8)
    with pytest.raises(ValueError, match="must return"):
        functional.flow_difference(video, video, lambda a, b: torch.zeros(len(a), 2, 4, 4))


def step_image(edge_column, height=5, width=6):
    """[3, H, W] gray image: 0 left of `edge_column`, 1 from it on."""
    image = torch.zeros(3, height, width)
    image[:, :, edge_column:] = 1
    return image


def test_vepi_on_a_synthetic_edge_image_by_hand():
    inputs = torch.stack([step_image(3), step_image(3)])[None]  # [1, 2, 3, 5, 6]
    renders = torch.stack([step_image(4), step_image(3)])[None]  # frame 0's edge moved one column right
    masks = torch.zeros(1, 2, 1, 5, 6)
    masks[..., 2, 3] = 1  # one pixel; the 5x5 dilation covers columns 1..5 of every row
    # Sobel magnitudes inside columns 1..5 take two values, so Pearson sees the patterns
    # input [0, 1, 1, 0, 0] and render [0, 0, 1, 1, 0]: means 2/5, covariance sum 0.2, variance sums 1.2 -> 1/6.
    # (a 3x3 dilation would give -1/2.) Frame 1 renders the input: 1. Mean over frames: 7/12.
    assert functional.vepi(inputs, renders, masks).item() == pytest.approx(7 / 12, abs=1e-5)
    # masks may also come without their channel axis: [B, T, H, W]
    assert functional.per_video_vepi(inputs, renders, masks[:, :, 0]).item() == pytest.approx(7 / 12, abs=1e-5)


def test_vepi_leaves_out_frames_without_a_mask():
    inputs = torch.stack([step_image(3), step_image(3)])[None]
    renders = torch.stack([step_image(4), step_image(4)])[None]
    masks = torch.zeros(1, 2, 1, 5, 6)
    masks[0, 0, 0, 2, 3] = 1  # frame 1 has no subject
    assert functional.vepi(inputs, renders, masks).item() == pytest.approx(1 / 6, abs=1e-5)
    with pytest.raises(ValueError, match="undefined for every video"):
        functional.vepi(inputs, renders, torch.zeros_like(masks))


def test_vepi_uses_the_rec601_luma():
    image = torch.rand(1, 1, 3, 16, 16)
    luma = (image * torch.tensor([0.299, 0.587, 0.114]).view(1, 1, 3, 1, 1)).sum(2, keepdim=True)
    gray = luma.expand(-1, -1, 3, -1, -1)
    assert torch.allclose(functional.edge_map(image[0]), functional.edge_map(gray[0]), atol=1e-6)
    # so a render that keeps the luma keeps every edge, whatever it does to the colours
    assert functional.vepi(image, gray, torch.ones(1, 1, 1, 16, 16)).item() == pytest.approx(1.0, abs=1e-6)


def test_frechet_distance_of_gaussians_by_hand():
    mu1, mu2 = torch.zeros(3), torch.tensor([1.0, 2.0, 2.0])
    sigma1, sigma2 = torch.diag(torch.tensor([1.0, 4.0, 9.0])), torch.diag(torch.tensor([4.0, 4.0, 1.0]))
    # |mu1 - mu2|^2 = 9; commuting covariances: sum (sqrt a - sqrt b)^2 = 1 + 0 + 4
    assert functional.frechet_distance(mu1, sigma1, mu2, sigma2).item() == pytest.approx(14.0, abs=1e-9)
    # the same in a rotated basis
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)))
    rotated = functional.frechet_distance(
        mu1 @ rotation.T, rotation @ sigma1 @ rotation.T, mu2 @ rotation.T, rotation @ sigma2 @ rotation.T
    )
    assert rotated.item() == pytest.approx(14.0, abs=1e-5)


def test_frechet_distance_of_non_commuting_covariances_by_hand():
    sigma1 = torch.tensor([[2.0, 1.0], [1.0, 2.0]])
    sigma2 = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    # sigma1 sigma2 = [[2, 4], [1, 8]]: trace 10, determinant 12; for 2x2 with eigenvalues l1, l2 >= 0,
    # Tr sqrt = sqrt(l1) + sqrt(l2) = sqrt(trace + 2 sqrt(determinant))
    expected = 4 + 5 - 2 * math.sqrt(10 + 2 * math.sqrt(12))
    distance = functional.frechet_distance(torch.zeros(2), sigma1, torch.zeros(2), sigma2)
    assert distance.dtype == torch.float64
    assert distance.item() == pytest.approx(expected, abs=1e-9)


def test_frechet_distance_is_symmetric_and_zero_for_the_same_gaussian():
    generator = torch.Generator().manual_seed(1)
    # rank-deficient covariances, as from fewer clips than feature dimensions
    a, b = torch.randn(20, 64, generator=generator), torch.randn(20, 64, generator=generator) * 2 + 1
    stats_a, stats_b = functional.gaussian_statistics(a), functional.gaussian_statistics(b)
    forward = functional.frechet_distance(*stats_a, *stats_b)
    backward = functional.frechet_distance(*stats_b, *stats_a)
    assert forward.item() > 10
    assert forward.item() == pytest.approx(backward.item(), rel=1e-9)
    assert abs(functional.frechet_distance(*stats_a, *stats_a).item()) < 1e-9 * stats_a[1].trace().item()


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one D"):
        functional.frechet_distance(torch.zeros(3), torch.eye(3), torch.zeros(2), torch.eye(2))


def test_video_metrics_of_a_perfect_prediction():
    video = torch.rand(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    other = torch.rand(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    assert functional.rm(video, video).item() == 0
    assert functional.flow_difference(video, video, DisFlow()).item() == 0
    assert functional.ssim(video, video).item() == pytest.approx(1.0, abs=1e-6)
    assert functional.psnr(video, video).item() == math.inf
    masks = torch.ones(2, 3, 1, 32, 32)
    assert functional.vepi(video, video, masks).item() == pytest.approx(1.0, abs=1e-6)
    # and a wrong one scores worse on each
    assert functional.rm(other, video) > 0.1
    assert functional.flow_difference(other, video, DisFlow()) > 0
    assert functional.ssim(other, video) < 0.5
    assert functional.vepi(video, other, masks) < 0.5


def test_psnr_matches_the_validation_setting():
    pred, gt = torch.rand(2, 3, 3, 16, 16), torch.rand(2, 3, 3, 16, 16)
    # per-frame PSNR averaged over the frames, not the PSNR of the pooled error
    per_frame = PeakSignalNoiseRatio(data_range=1.0, dim=(1, 2, 3))(pred.flatten(0, 1), gt.flatten(0, 1))
    assert functional.psnr(pred, gt).item() == pytest.approx(per_frame.item(), rel=1e-6)
    pooled = 10 * torch.log10(1 / (pred - gt).square().mean())
    assert functional.psnr(pred, gt).item() != pytest.approx(pooled.item(), rel=1e-6)


@pytest.mark.parametrize(
    "pred, message",
    [
        (torch.rand(2, 3, 16, 16), r"\[B, T, 3, H, W\]"),
        (torch.rand(1, 2, 1, 16, 16), r"\[B, T, 3, H, W\]"),
        (torch.rand(1, 2, 3, 16, 16) * 2, r"in \[0, 1\]"),
        (torch.rand(1, 2, 3, 16, 8), "differ in shape"),
    ],
)
def test_bad_videos_are_named(pred, message):
    with pytest.raises(ValueError, match=message):
        functional.rm(pred, torch.rand(1, 2, 3, 16, 16))


def test_video_clips_are_consecutive_and_drop_the_rest():
    videos = torch.arange(2 * 25).float().view(2, 25, 1, 1, 1).expand(2, 25, 3, 1, 1)
    clips = functional.video_clips(videos, 10)
    assert clips.shape == (4, 10, 3, 1, 1)
    assert clips[:, :, 0, 0, 0][:, 0].tolist() == [0, 10, 25, 35]
    with pytest.raises(ValueError, match="at least 16 frames"):
        functional.video_clips(videos[:, :9], 16)


def test_detector_input_is_rgb_in_minus_one_to_one_at_224():
    clips = torch.zeros(1, 10, 3, 48, 64)
    clips[:, :, 0] = 1  # red
    x = functional.detector_input(clips)
    assert x.shape == (1, 3, 10, 224, 224)
    assert torch.allclose(x[:, 0], torch.ones(())) and torch.allclose(x[:, 1:], -torch.ones(()))
