"""A tiny, randomly initialised Stable Video Diffusion for the CPU and the tests.

The sizes are diffusers' own SVD pipeline-test sizes (UNet block_out_channels (32, 64), cross-attention
width 32, a two-block VAE, a 32-wide CLIP vision tower), so every code path of the real img2vid-xt
model runs in milliseconds. `save_tiny_svd` writes it in the hub's folder layout
(`model_index.json`, `unet/`, `vae/`, `image_encoder/`, `feature_extractor/`, `scheduler/`), which is
what the loading code and its tests read.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLTemporalDecoder,
    EulerDiscreteScheduler,
    UNetSpatioTemporalConditionModel,
)
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

try:  # transformers >= 5 splits the PIL backend out; the plain name needs torchvision there.
    from transformers import CLIPImageProcessorPil as CLIPImageProcessor
except ImportError:  # pragma: no cover - transformers 4.x
    from transformers import CLIPImageProcessor

TINY_IMAGE_SIZE = 32


def tiny_unet() -> UNetSpatioTemporalConditionModel:
    return UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=8,
        # 3 added time ids (fps, motion bucket, noise augmentation) x addition_time_embed_dim
        projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
    )


def tiny_vae() -> AutoencoderKLTemporalDecoder:
    return AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        latent_channels=4,
    )


def tiny_image_encoder() -> CLIPVisionModelWithProjection:
    config = CLIPVisionConfig(
        hidden_size=32,
        projection_dim=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=TINY_IMAGE_SIZE,
        patch_size=4,
    )
    return CLIPVisionModelWithProjection(config)


def tiny_feature_extractor() -> CLIPImageProcessor:
    return CLIPImageProcessor(
        crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
        size={"shortest_edge": TINY_IMAGE_SIZE},
    )


def tiny_scheduler() -> EulerDiscreteScheduler:
    # SVD's EDM-style scheduler; the one-step model never uses it, it only completes the hub layout.
    return EulerDiscreteScheduler(
        prediction_type="v_prediction",
        use_karras_sigmas=True,
        sigma_min=0.002,
        sigma_max=700.0,
        timestep_type="continuous",
        interpolation_type="linear",
    )


def tiny_svd_components(seed: int = 0) -> dict:
    """Random tiny SVD components keyed like the hub's subfolders; deterministic in `seed`.

    The global RNG state is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return {
            "unet": tiny_unet(),
            "vae": tiny_vae(),
            "image_encoder": tiny_image_encoder(),
            "feature_extractor": tiny_feature_extractor(),
            "scheduler": tiny_scheduler(),
        }


def save_tiny_svd(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write a tiny random SVD to `folder` in the hub's layout, with each component's save_pretrained.

    Returns the folder. It then loads like `stabilityai/stable-video-diffusion-img2vid-xt`, with
    diffusers' `StableVideoDiffusionPipeline.from_pretrained` or `AnyToBokeh.from_svd`.
    """
    from diffusers import StableVideoDiffusionPipeline

    folder = Path(folder)
    pipeline = StableVideoDiffusionPipeline(**tiny_svd_components(seed))
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder
