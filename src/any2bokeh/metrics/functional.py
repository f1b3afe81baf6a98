"""The paper's metrics (§4.1, Table 1) as plain functions of whole videos.

Every video argument is [B, T, 3, H, W], float, RGB in [0, 1]. Each function returns the mean over
the videos of a per-video score; `per_video_*` functions return the [B] scores that the torchmetrics
classes in `video_metrics` and `frechet` accumulate.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale
from kornia.filters import sobel
from kornia.morphology import dilation
from torch import Tensor
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

#: a flow function: (first frames, second frames), each [N, 3, H, W] in [0, 1] -> flow [N, 2, H, W] in pixels
FlowFunction = Callable[[Tensor, Tensor], Tensor]


def check_videos(pred: Tensor, gt: Tensor, min_frames: int = 1) -> None:
    """Shapes and range of a prediction and its ground truth; a ValueError names what is wrong."""
    for name, video in (("pred", pred), ("gt", gt)):
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"{name} must be [B, T, 3, H, W] RGB videos, got shape {tuple(video.shape)}")
        if not video.is_floating_point():
            raise ValueError(f"{name} must be floating point in [0, 1], got {video.dtype}")
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt differ in shape: {tuple(pred.shape)} vs {tuple(gt.shape)}")
    if pred.shape[1] < min_frames:
        raise ValueError(f"the videos have {pred.shape[1]} frames; this metric needs at least {min_frames}")
    low = torch.minimum(pred.detach().amin(), gt.detach().amin())
    high = torch.maximum(pred.detach().amax(), gt.detach().amax())
    if low < 0 or high > 1:
        raise ValueError(f"videos must be in [0, 1], got values in [{low.item():.4g}, {high.item():.4g}]")


def frames(videos: Tensor) -> Tensor:
    # videos: [B, T, 3, H, W] -> [B * T, 3, H, W]
    return videos.flatten(0, 1)


# ---------------------------------------------------------------- image fidelity, per frame
def psnr(pred: Tensor, gt: Tensor) -> Tensor:
    """Per-frame PSNR (data range 1) averaged over all frames: the setting of `val/psnr`."""
    check_videos(pred, gt)
    return peak_signal_noise_ratio(frames(pred), frames(gt), data_range=1.0, dim=(1, 2, 3))


def ssim(pred: Tensor, gt: Tensor) -> Tensor:
    """Per-frame SSIM (data range 1, torchmetrics' Gaussian 11x11 window) averaged over all frames."""
    check_videos(pred, gt)
    return structural_similarity_index_measure(frames(pred), frames(gt), data_range=1.0)


def per_video_lpips(pred: Tensor, gt: Tensor, network: torch.nn.Module) -> Tensor:
    """[B] LPIPS of each video, averaged over its frames.

    `network` is torchmetrics' LPIPS network (`lpips.lpips_network`); the paper feeds it [-1, 1].
    """
    check_videos(pred, gt)
    # per frame: [B * T, 1, 1, 1] -> [B, T]
    scores = network(frames(pred) * 2 - 1, frames(gt) * 2 - 1).reshape(pred.shape[:2])
    return scores.mean(1)


def lpips(pred: Tensor, gt: Tensor, network: torch.nn.Module) -> Tensor:
    """LPIPS (squeeze backbone in the paper) averaged over frames and videos."""
    return per_video_lpips(pred, gt, network).mean()


# ---------------------------------------------------------------- temporal consistency
def per_video_rm(pred: Tensor, gt: Tensor) -> Tensor:
    """[B] relation metric: mean over t of mean |(P_{t+1} - P_t) - (G_{t+1} - G_t)|, along the frame axis."""
    check_videos(pred, gt, min_frames=2)
    pred_change = pred[:, 1:] - pred[:, :-1]
    gt_change = gt[:, 1:] - gt[:, :-1]
    # [B, T - 1, 3, H, W] -> [B, T - 1] (mean per adjacent pair) -> [B]
    return (pred_change - gt_change).abs().flatten(2).mean(2).mean(1)


def rm(pred: Tensor, gt: Tensor) -> Tensor:
    """The relation metric (RM) of Table 1, averaged over videos."""
    return per_video_rm(pred, gt).mean()


def per_video_flow_difference(pred: Tensor, gt: Tensor, flow: FlowFunction) -> Tensor:
    """[B] flow difference: mean over t of mean |flow(G_t -> G_{t+1}) - flow(P_t -> P_{t+1})| in pixels."""
    check_videos(pred, gt, min_frames=2)
    batch, pairs = pred.shape[0], pred.shape[1] - 1
    # [B, T - 1, 3, H, W] -> [B * (T - 1), 3, H, W]
    gt_flow = flow(gt[:, :-1].flatten(0, 1), gt[:, 1:].flatten(0, 1))
    pred_flow = flow(pred[:, :-1].flatten(0, 1), pred[:, 1:].flatten(0, 1))
    expected = (batch * pairs, 2, *pred.shape[-2:])
    if gt_flow.shape != expected or pred_flow.shape != expected:
        raise ValueError(f"the flow function must return {expected}, got {tuple(gt_flow.shape)}")
    # [B * (T - 1), 2, H, W] -> [B, T - 1] -> [B]
    return (gt_flow - pred_flow).abs().flatten(1).mean(1).reshape(batch, pairs).mean(1)


def flow_difference(pred: Tensor, gt: Tensor, flow: FlowFunction) -> Tensor:
    """FD of Table 1 (the paper's flow is RAFT-large, `flow.RaftFlow`), averaged over videos."""
    return per_video_flow_difference(pred, gt, flow).mean()


# ---------------------------------------------------------------- edges of the subject (Appendix A.4)
def edge_map(videos: Tensor) -> Tensor:
    """[N, 3, H, W] in [0, 1] -> [N, 1, H, W] 3x3 Sobel gradient magnitude of 0.299 R + 0.587 G + 0.114 B."""
    return sobel(rgb_to_grayscale(videos))


def per_video_vepi(inputs: Tensor, renders: Tensor, masks: Tensor) -> Tensor:
    """[B] VEPI: Pearson correlation of the input's and the render's edge maps inside the subject mask
    dilated by a 5x5 square (eq. 9; Sobel magnitude as the authors' code does), mean over the frames.

    Args:
        inputs: [B, T, 3, H, W] all-in-focus frames in [0, 1].
        renders: [B, T, 3, H, W] bokeh renders in [0, 1].
        masks: [B, T, 1, H, W] or [B, T, H, W] subject masks; values above 0.5 are the subject.

    A frame whose dilated mask is empty, or where either edge map is constant inside it, has no
    correlation and is left out of its video's mean; a video with no such frame scores NaN.
    """
    check_videos(renders, inputs)
    if masks.ndim == 4:
        masks = masks.unsqueeze(2)
    if masks.shape != (*inputs.shape[:2], 1, *inputs.shape[-2:]):
        raise ValueError(
            f"masks must be [B, T, 1, H, W] matching the videos {tuple(inputs.shape)}, got {tuple(masks.shape)}"
        )
    square = torch.ones(5, 5, device=masks.device)
    # [B, T, 1, H, W] -> [B * T, 1, H, W]
    region = dilation((frames(masks) > 0.5).float(), square) > 0.5
    edges_in, edges_out = edge_map(frames(inputs)).double(), edge_map(frames(renders)).double()
    count = region.flatten(1).sum(1)
    # mean and centred values inside each frame's region: [B * T, 1, H, W]
    mean_in = (edges_in * region).flatten(1).sum(1) / count.clamp(min=1)
    mean_out = (edges_out * region).flatten(1).sum(1) / count.clamp(min=1)
    centred_in = (edges_in - mean_in.view(-1, 1, 1, 1)) * region
    centred_out = (edges_out - mean_out.view(-1, 1, 1, 1)) * region
    covariance = (centred_in * centred_out).flatten(1).sum(1)
    spread = ((centred_in**2).flatten(1).sum(1) * (centred_out**2).flatten(1).sum(1)).sqrt()
    valid = (count > 0) & (spread > 1e-12)
    correlation = torch.where(valid, covariance / spread.clamp(min=1e-300), torch.zeros_like(spread))
    # [B * T] -> [B, T]; mean over the valid frames of each video
    valid, correlation = valid.view(inputs.shape[:2]), correlation.view(inputs.shape[:2])
    return (correlation.sum(1) / valid.sum(1)).float()


def vepi(inputs: Tensor, renders: Tensor, masks: Tensor) -> Tensor:
    """VEPI (real-world edge preservation, Table 1), averaged over frames, then over videos.

    Videos without a valid frame (see `per_video_vepi`) are left out; none valid is an error.
    """
    scores = per_video_vepi(inputs, renders, masks)
    scores = scores[~scores.isnan()]
    if scores.numel() == 0:
        raise ValueError("VEPI is undefined for every video: the subject masks are empty or the edges constant")
    return scores.mean()


# ---------------------------------------------------------------- video quality (VFID-I, FVD)
def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> Tensor:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64:
    ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)).

    Tr((sigma1 sigma2)^(1/2)) is the sum of the singular values of sigma1^(1/2) sigma2^(1/2) (its
    square is sigma1^(1/2) sigma2 sigma1^(1/2), with the spectrum of sigma1 sigma2). The symmetric
    square roots and the SVD stay real and accurate for the rank-deficient covariances of few clips,
    where a general matrix square root turns complex and eigenvalue square roots amplify round-off.
    """
    mu1, mu2, sigma1, sigma2 = (x.detach().double() for x in (mu1, mu2, sigma1, sigma2))
    if mu1.ndim != 1 or mu1.shape != mu2.shape or sigma1.shape != (mu1.numel(),) * 2 or sigma2.shape != sigma1.shape:
        raise ValueError(
            f"need means [D] and covariances [D, D] of one D, got {tuple(mu1.shape)}, {tuple(sigma1.shape)}, "
            f"{tuple(mu2.shape)}, {tuple(sigma2.shape)}"
        )
    trace_root = torch.linalg.svdvals(psd_sqrt(sigma1) @ psd_sqrt(sigma2)).sum()
    return (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_root


def psd_sqrt(matrix: Tensor) -> Tensor:
    """The square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues -> 0)."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def gaussian_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean [D] and unbiased covariance [D, D] in float64 of features [N, D] (N >= 2)."""
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need features [N >= 2, D], got {tuple(features.shape)}")
    features = features.double()
    return features.mean(0), features.T.cov()


def video_clips(videos: Tensor, length: int) -> Tensor:
    """Consecutive non-overlapping clips of `length` frames; the frames left over are dropped.

    [B, T, 3, H, W] -> [B * (T // length), length, 3, H, W]
    """
    if videos.shape[1] < length:
        raise ValueError(f"clips of {length} frames need videos of at least {length} frames, got {videos.shape[1]}")
    count = videos.shape[1] // length
    # [B, count * length, 3, H, W] -> [B * count, length, 3, H, W]
    return videos[:, : count * length].reshape(-1, length, *videos.shape[2:])


def detector_input(clips: Tensor, size: int = 224) -> Tensor:
    """I3D's input: [N, L, 3, H, W] in [0, 1] -> [N, 3, L, size, size] in [-1, 1], RGB."""
    n, length = clips.shape[:2]
    # [N, L, 3, H, W] -> [N * L, 3, H, W]
    resized = F.interpolate(
        clips.flatten(0, 1), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    # [N * L, 3, size, size] -> [N, 3, L, size, size]
    return (resized.clamp(0, 1) * 2 - 1).reshape(n, length, 3, size, size).transpose(1, 2)


def clip_features(
    videos: Tensor, detector: torch.nn.Module, clip_length: int, logits: bool, size: int = 224, batch_size: int = 8
) -> Tensor:
    """I3D features of the clips of `videos` [B, T, 3, H, W] in [0, 1]: [B * (T // clip_length), D] in float64.

    logits: the 400 Kinetics logits (FVD) instead of the 1024-d pooled features (VFID-I).
    size: the side the frames are resized to (I3D's 224; smaller only to test the code quickly).
    """
    clips = video_clips(videos, clip_length)
    extract = detector.class_logits if logits else detector.features
    with torch.no_grad():
        batches = [extract(detector_input(clips[i : i + batch_size], size)) for i in range(0, len(clips), batch_size)]
    return torch.cat(batches).double()


def fvd(pred: Tensor, gt: Tensor, detector: torch.nn.Module, clip_length: int = 16, size: int = 224) -> Tensor:
    """FVD: Fréchet distance of I3D's 400 Kinetics logits of 16-frame clips at 224^2 (`i3d.load_i3d`)."""
    check_videos(pred, gt, min_frames=clip_length)
    real = clip_features(gt, detector, clip_length, logits=True, size=size)
    fake = clip_features(pred, detector, clip_length, logits=True, size=size)
    return frechet_distance(*gaussian_statistics(real), *gaussian_statistics(fake))


def vfid(pred: Tensor, gt: Tensor, detector: torch.nn.Module, clip_length: int = 10, size: int = 224) -> Tensor:
    """VFID-I: Fréchet distance of I3D's 1024-d pooled features of 10-frame clips at 224^2, RGB."""
    check_videos(pred, gt, min_frames=clip_length)
    real = clip_features(gt, detector, clip_length, logits=False, size=size)
    fake = clip_features(pred, detector, clip_length, logits=False, size=size)
    return frechet_distance(*gaussian_statistics(real), *gaussian_statistics(fake))
