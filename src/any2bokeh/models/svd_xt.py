"""The real SVD img2vid-xt architecture with random weights: timings, memory and shape checks without a download.

`random_real_svd(device, dtype)` builds AnyToBokeh from the published configs of SVD img2vid-xt (the
UNet is diffusers' default `UNetSpatioTemporalConditionModel()`; the VAE and the CLIP ViT-H/14 image
encoder are written out below), with the parameters created directly on `device` (the meta device, or
under FakeTensorMode, builds nothing). Speed and memory do not depend on the weights' values. Used by
the benchmarks (`predict.py`, `train_step.py`) and the tests of the real sizes.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from .any_to_bokeh import AnyToBokeh
from .tiny import CLIPImageProcessor

# vae/config.json of stabilityai/stable-video-diffusion-img2vid-xt
SVD_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    sample_size=768,
    scaling_factor=0.18215,
    force_upcast=True,
)
# image_encoder/config.json (CLIP ViT-H/14 vision tower with projection)
SVD_CLIP = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_attention_heads=16,
    num_hidden_layers=32,
    patch_size=14,
    image_size=224,
    projection_dim=1024,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
)


def random_real_svd(
    device: str | torch.device = "cuda", dtype: torch.dtype | None = None, use_image_encoder: bool = True, **options
) -> AnyToBokeh:
    """AnyToBokeh on the real SVD img2vid-xt architecture, randomly initialised on `device`.

    options: `AnyToBokehOptions` fields, e.g. `**RELEASE_OPTIONS` for the authors' released architecture.
    """
    with torch.device(device):
        unet = UNetSpatioTemporalConditionModel()
        vae = AutoencoderKLTemporalDecoder(**SVD_VAE)
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**SVD_CLIP)) if use_image_encoder else None
        model = AnyToBokeh(unet, vae, encoder, CLIPImageProcessor() if use_image_encoder else None, **options)
    # the device context misses tensors made by the legacy `torch.Tensor(...)` constructor (diffusers'
    # AlphaBlender.mix_factor, in every spatio-temporal block): move them too
    return model.to(device=device, dtype=dtype)
