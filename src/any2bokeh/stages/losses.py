"""Pixel-space losses of stage 3 (§3.4)."""

from __future__ import annotations

from torch import Tensor


def image_gradients(frames: Tensor) -> tuple[Tensor, Tensor]:
    """Forward differences along x and y.

    Args:
        frames: [..., H, W] float.
    Returns:
        (dx [..., H, W-1], dy [..., H-1, W]).
    """
    if frames.ndim < 2:
        raise ValueError(f"image_gradients expects [..., H, W], got shape {tuple(frames.shape)}")
    dx = frames[..., :, 1:] - frames[..., :, :-1]
    dy = frames[..., 1:, :] - frames[..., :-1, :]
    return dx, dy


def gradient_texture_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """Texture loss L_t of eq. (5): squared differences of the x and y image gradients.

    Eq. (5) sums over pixels; this takes the mean over pixels, channels, frames and the batch instead,
    so the weight λ in front of it does not depend on the resolution or the clip length.

    Args:
        prediction: [..., H, W] predicted frames (e.g. [B, T, 3, H, W] in [-1, 1]).
        target: ground-truth frames of the same shape.
    Returns:
        scalar tensor.
    """
    if prediction.shape != target.shape:
        raise ValueError(
            f"gradient_texture_loss needs equal shapes, got {tuple(prediction.shape)} and {tuple(target.shape)}"
        )
    if prediction.shape[-1] < 2 or prediction.shape[-2] < 2:
        raise ValueError(f"gradient_texture_loss needs frames of at least 2x2 pixels, got {tuple(prediction.shape)}")
    pred_dx, pred_dy = image_gradients(prediction)
    true_dx, true_dy = image_gradients(target)
    return (pred_dx - true_dx).square().mean() + (pred_dy - true_dy).square().mean()
