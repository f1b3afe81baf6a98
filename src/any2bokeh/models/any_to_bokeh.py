"""AnyToBokeh: the one-step, MPI-conditioned video bokeh model (§3.2); saving and loading: serialization.py.

One call renders a clip:

1. The VAE encodes the all-in-focus frames and the V_D image (|d - d_f| as a 3-channel image); the UNet
   input is their concatenation, 4 + 4 = 8 channels, exactly SVD's `conv_in`.
2. The cross-attention context is the CLIP image embedding of each input frame (zeros when the image
   encoder is switched off, which saves its memory).
3. The UNet runs once at a fixed timestep with SVD's micro-conditioning (fps, motion bucket 127, noise
   augmentation 0), the MPI regions of the disparity and the all-in-focus latents as MPI condition; its
   output is the bokeh latent itself: no noise, no scheduler.
4. The temporal VAE decoder decodes it, with skips from the all-in-focus encoding (stage 3).

fps: SVD's pipeline feeds its UNet `fps - 1`; the authors trained with 7 fed directly and ran inference
through the stock pipeline, which fed 6. Here the UNet always receives `fps` itself (default 7, the training
value), in training and at inference alike; `from_release` sets 6, what the released model ran with. The
options (`AnyToBokehOptions`, options.py) choose between this project's model and the computation of the
authors' released network (`from_release`, release_weights.py).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple

import torch
from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
from torch import Tensor, nn
from transformers import CLIPVisionModelWithProjection

from .bokeh_unet import BokehUNet
from .clip_input import CLIP_RESIZES, clip_pixels
from .conditioning import mpi_regions, vd_image
from .inputs import normalize_inputs
from .loading import SVD_XT, load_svd_components
from .options import AnyToBokehOptions
from .release_weights import load_release
from .serialization import SerializationMixin
from .tiny import CLIPImageProcessor, tiny_svd_components
from .vae import SkipVAE

logger = logging.getLogger(__name__)


@dataclass
class AnyToBokehOutput:
    """frames: [B, T, 3, H, W] in [-1, 1]; latents: [B, T, 4, h, w] (scaled by the VAE scaling factor)."""

    frames: Tensor
    latents: Tensor


class EncodedFrames(NamedTuple):
    """latents: [B, T, 4, h, w] scaled; skips: the VAE encoder's down-block inputs, [B * T, C_i, H_i, W_i].

    A named pair, so `latents, skips = model.encode(frames, return_skips=True)` works.
    """

    latents: Tensor
    skips: list[Tensor]


class AnyToBokeh(SerializationMixin, nn.Module):
    """The one-step Any-to-Bokeh model.

    Args:
        unet: SVD's `UNetSpatioTemporalConditionModel` (8 -> 4 channels); wrapped here as `self.unet`, a `BokehUNet`.
        vae: SVD's `AutoencoderKLTemporalDecoder`; wrapped here as `self.vae`, a `SkipVAE`.
        image_encoder: SVD's `CLIPVisionModelWithProjection`, or None for a zero context.
        feature_extractor: SVD's `CLIPImageProcessor` (its mean and std normalise the CLIP input); needed
            with an image encoder.
        options: `AnyToBokehOptions` fields as keywords (n_planes, mpi_alpha, fps, ...).

    Every pretrained parameter keeps its name under `unet.unet.`, `vae.vae.` and `image_encoder.`; the new
    modules are listed by `new_parameter_names()`.
    """

    def __init__(
        self,
        unet: UNetSpatioTemporalConditionModel,
        vae: AutoencoderKLTemporalDecoder,
        image_encoder: CLIPVisionModelWithProjection | None = None,
        feature_extractor: CLIPImageProcessor | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        known = set(AnyToBokehOptions.__dataclass_fields__) - {"use_image_encoder"}
        unknown = set(options) - known
        if unknown:
            raise TypeError(f"AnyToBokeh: unknown option(s) {sorted(unknown)}; known: {sorted(known)}")
        self.options = AnyToBokehOptions(use_image_encoder=image_encoder is not None, **options)
        if self.options.n_planes < 1 or not self.options.mpi_alpha > 0:
            raise ValueError(
                f"AnyToBokeh: need n_planes >= 1 and mpi_alpha > 0, got n_planes={self.options.n_planes}, "
                f"mpi_alpha={self.options.mpi_alpha}"
            )
        if image_encoder is not None and feature_extractor is None:
            raise ValueError("AnyToBokeh: an image encoder needs its feature_extractor (CLIP mean and std)")
        if unet.config.addition_time_embed_dim * 3 != unet.add_embedding.linear_1.in_features:
            raise ValueError(
                f"AnyToBokeh: the UNet takes {unet.add_embedding.linear_1.in_features} added-time features, not "
                f"3 x addition_time_embed_dim={unet.config.addition_time_embed_dim}"
            )

        # names of the pretrained tensors, recorded before wrapping, as keys of this module
        self._pretrained_keys = {
            "unet": ["unet.unet." + key for key in unet.state_dict()],
            "vae": ["vae.vae." + key for key in vae.state_dict()],
            "image_encoder": ["image_encoder." + key for key in image_encoder.state_dict()] if image_encoder else [],
        }
        self.unet = BokehUNet(
            unet,
            n_planes=self.options.n_planes,
            ff_mult=self.options.ff_mult,
            max_key_tokens=self.options.max_key_tokens,
            key_mask=self.options.key_mask,
            k_residual=self.options.k_residual,
            k_encoding=self.options.k_encoding,
            k_gain=self.options.k_gain,
            projection=self.options.projection,
            cond_tokens=self.options.cond_tokens,
            ff_twice=self.options.ff_twice,
            temporal_context=self.options.temporal_context,
        )
        if self.options.clip_resize not in CLIP_RESIZES:
            raise ValueError(f"AnyToBokeh: clip_resize must be one of {CLIP_RESIZES}, got {self.options.clip_resize!r}")
        self.vae = SkipVAE(vae, skip_init=self.options.skip_init)
        self.image_encoder = image_encoder
        self.feature_extractor = feature_extractor
        if image_encoder is not None:
            mean = torch.tensor(feature_extractor.image_mean, dtype=torch.float32).view(3, 1, 1)
            std = torch.tensor(feature_extractor.image_std, dtype=torch.float32).view(3, 1, 1)
            self.register_buffer("clip_mean", mean, persistent=False)
            self.register_buffer("clip_std", std, persistent=False)

        names = set(self.state_dict())
        lost = [key for keys in self._pretrained_keys.values() for key in keys if key not in names]
        if lost:
            raise RuntimeError(f"AnyToBokeh: wrapping renamed pretrained tensors, e.g. {lost[:5]}")
        # value checks of the inputs cost one device sync per call; tracing (FakeTensorMode) needs them off
        self.check_values = True

    # ---------------------------------------------------------------- properties

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def vae_scale(self) -> int:
        """Pixels per latent along each axis."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def size_multiple(self) -> int:
        """Frame height and width must be multiples of this (VAE and UNet downsampling)."""
        return self.vae_scale * 2 ** (len(self.unet.unet.down_blocks) - 1)

    def pretrained_parameter_names(self) -> list[str]:
        return [key for keys in self._pretrained_keys.values() for key in keys]

    def new_parameter_names(self) -> list[str]:
        """State-dict keys of the modules that SVD does not have (MPI attention, condition conv, skip convs)."""
        pretrained = set(self.pretrained_parameter_names())
        return [key for key in self.state_dict() if key not in pretrained]

    def decoder_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """(name, parameter) of the VAE decoder and its skip convs that take part in decoding (stage 3)."""
        for name, parameter in self.vae.decoder_parameters():
            yield f"vae.{name}", parameter

    def enable_gradient_checkpointing(self, levels: str = "all") -> None:
        """Recompute the UNet's ("all" levels, or the "deep" ones) and the VAE's blocks in backward; blocks run
        without grad are not."""
        self.unet.enable_gradient_checkpointing(levels)
        self.vae.enable_gradient_checkpointing()

    def disable_gradient_checkpointing(self) -> None:
        self.unet.disable_gradient_checkpointing()
        self.vae.disable_gradient_checkpointing()

    # ---------------------------------------------------------------- building

    @classmethod
    def from_svd(
        cls,
        pretrained: str | os.PathLike = SVD_XT,
        *,
        use_image_encoder: bool = True,
        gradient_checkpointing: bool = False,
        dtype: torch.dtype | str | None = None,
        variant: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        **options: Any,
    ) -> "AnyToBokeh":
        """Build from a diffusers-format SVD (img2vid or img2vid-xt): a local folder or a (cached) hub id.

        All pretrained weights load by name with no missing or unexpected keys; the new modules start at
        their initial values (zero gates and skips: the model computes what SVD computes).

        Args:
            pretrained: folder with unet/, vae/, image_encoder/, feature_extractor/, or a hub id.
            use_image_encoder: load CLIP for a per-frame context; False gives a zero context.
            gradient_checkpointing: checkpoint the UNet and VAE blocks.
            dtype: weights dtype, e.g. torch.bfloat16 or "bf16" (None: float32).
            variant: weight-file variant, e.g. "fp16".
            cache_dir: the hub cache for a hub id (None: the default).
            options: `AnyToBokehOptions` fields (n_planes, mpi_alpha, fps, timestep, ...).
        """
        components = load_svd_components(
            pretrained, use_image_encoder=use_image_encoder, dtype=dtype, variant=variant, cache_dir=cache_dir
        )
        model = cls(**components, **options)._set_dtype_and_checkpointing(dtype, gradient_checkpointing)
        logger.info(
            "loaded SVD from %s: %d pretrained tensors, %d new (%s)",
            pretrained,
            len(model.pretrained_parameter_names()),
            len(model.new_parameter_names()),
            ", ".join(sorted({key.split(".")[0] + "." + key.split(".")[1] for key in model.new_parameter_names()})),
        )
        return model

    @classmethod
    def from_release(
        cls,
        folder: str | os.PathLike,
        svd: str | os.PathLike | None = None,
        *,
        dtype: torch.dtype | str | None = None,
        **options: Any,
    ) -> "AnyToBokeh":
        """The authors' released weights (`folder/unet/unet/`, `folder/vae/`) with CLIP from the SVD folder `svd`.

        The release's computation is set by its options (`RELEASE_OPTIONS`); `options` override them (the
        opt-in fixes, e.g. `cond_tokens=True` for fine-tuning with the MPI prior). See `release_weights.load_release`.
        """
        return load_release(cls, folder, svd, dtype=dtype, **options)

    @classmethod
    def tiny(
        cls,
        seed: int = 0,
        use_image_encoder: bool = True,
        *,
        gradient_checkpointing: bool = False,
        dtype: torch.dtype | str | None = None,
        **options: Any,
    ) -> "AnyToBokeh":
        """A randomly initialised tiny model (diffusers' SVD test sizes) for the CPU; deterministic in `seed`."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            components = tiny_svd_components(seed)
            components.pop("scheduler")
            if not use_image_encoder:
                components.update(image_encoder=None, feature_extractor=None)
            model = cls(**components, **options)
        return model._set_dtype_and_checkpointing(dtype, gradient_checkpointing)

    # ---------------------------------------------------------------- the one-step model

    def _check_frames(self, frames: Tensor, name: str) -> None:
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise ValueError(f"{name} must be [B, T, 3, H, W], got shape {tuple(frames.shape)}")
        height, width = frames.shape[-2:]
        if height % self.vae_scale or width % self.vae_scale:
            raise ValueError(f"{name}: height and width must be multiples of {self.vae_scale}, got {height}x{width}")

    def encode_with_skips(self, frames: Tensor, keep_skips: bool = True) -> EncodedFrames:
        """Encode frames [B, T, 3, H, W] in [-1, 1]: scaled latents [B, T, 4, h, w] and the encoder skips."""
        self._check_frames(frames, "frames")
        batch, num_frames = frames.shape[:2]
        # frames: [B, T, 3, H, W] -> [B * T, 3, H, W]
        encoding = self.vae.encode(frames.flatten(0, 1), keep_skips=keep_skips)
        latents = encoding.latent_dist.mode() * self.scaling_factor
        # latents: [B * T, 4, h, w] -> [B, T, 4, h, w]
        return EncodedFrames(latents=latents.unflatten(0, (batch, num_frames)), skips=encoding.skips)

    def encode(self, frames: Tensor, return_skips: bool = False) -> Tensor | EncodedFrames:
        """Encode frames [B, T, 3, H, W] in [-1, 1] to the posterior mode, scaled: [B, T, 4, h, w].

        With `return_skips`, an `EncodedFrames` (latents, skips) for `decode(latents, skips)`.
        """
        encoded = self.encode_with_skips(frames, keep_skips=return_skips)
        return encoded if return_skips else encoded.latents

    def decode(self, latents: Tensor, skips: list[Tensor] | None = None) -> Tensor:
        """Decode scaled latents [B, T, 4, h, w] with the temporal decoder to frames [B, T, 3, H, W] in [-1, 1].

        skips: `encode_with_skips(aif).skips` of the same clip, or None for the plain decoder.
        """
        if latents.ndim != 5:
            raise ValueError(f"latents must be [B, T, 4, h, w], got shape {tuple(latents.shape)}")
        batch, num_frames = latents.shape[:2]
        # latents: [B, T, 4, h, w] -> [B * T, 4, h, w]
        frames = self.vae.decode(latents.flatten(0, 1) / self.scaling_factor, num_frames, skips=skips)
        # frames: [B * T, 3, H, W] -> [B, T, 3, H, W]
        return frames.unflatten(0, (batch, num_frames))

    def image_context(self, frames: Tensor) -> Tensor:
        """Cross-attention context: the CLIP image embedding of each frame, [B, T, C]; zeros [B, 1, C] without CLIP.

        Frames [B, T, 3, H, W] in [-1, 1] are resized to the encoder's square input and normalised with the
        feature extractor's mean and std (options `clip_resize`, `clip_normalize`; see `clip_input`).
        """
        batch, num_frames = frames.shape[:2]
        if self.image_encoder is None:
            width = self.unet.unet.config.cross_attention_dim
            return torch.zeros(batch, 1, width, dtype=self.dtype, device=frames.device)
        size = self.image_encoder.config.image_size
        normalize = self.options.clip_normalize
        # frames: [B, T, 3, H, W] -> [B * T, 3, size, size]
        pixels = clip_pixels(
            frames.flatten(0, 1),
            size,
            self.options.clip_resize,
            self.clip_mean if normalize else None,
            self.clip_std if normalize else None,
        )
        embeddings = self.image_encoder(pixel_values=pixels.to(self.image_encoder.dtype)).image_embeds
        # embeddings: [B * T, C] -> [B, T, C]
        return embeddings.unflatten(0, (batch, num_frames)).to(self.dtype)

    def added_time_ids(self, batch: int, device: torch.device | None = None) -> Tensor:
        """SVD's micro-conditioning [B, 3]: (fps, motion bucket, noise augmentation)."""
        ids = [self.options.fps, self.options.motion_bucket_id, self.options.noise_aug_strength]
        return torch.tensor([ids], dtype=self.dtype, device=device).expand(batch, 3)

    def check_inputs(self, aif: Tensor, disparity: Tensor, disp_focus: Tensor | float, k: Tensor | float):
        """Validate and normalise the inputs: returns (disparity [B, T, 1, H, W], disp_focus [B, T], k [B, T])."""
        self._check_frames(aif, "aif")
        return normalize_inputs(aif, disparity, disp_focus, k, self.size_multiple, self.check_values)

    def unet_inputs(
        self,
        aif: Tensor,
        disparity: Tensor,
        disp_focus: Tensor | float,
        k: Tensor | float,
        *,
        aif_latents: Tensor | None = None,
        vd_latents: Tensor | None = None,
        context: Tensor | None = None,
    ) -> dict[str, Any]:
        """The keyword arguments of `self.unet` (a `BokehUNet`) for one step; `predict_latents` runs them.

        A caller may alter one signal (regions, condition latents, K) to probe what the network uses.

        Args:
            aif: all-in-focus frames [B, T, 3, H, W] in [-1, 1].
            disparity: [B, T, 1, H, W] (or [B, T, H, W]) in [0, 1], 1 nearest.
            disp_focus: focal disparity d_f in [0, 1]: float, [B] or [B, T].
            k: blur strength K >= 0 (pixels per unit disparity): float, [B] or [B, T].
            aif_latents, vd_latents, context: `encode(aif)`, the V_D latents and `image_context(aif)` when already
                computed (a renderer computes each frame's once for all the windows that hold it).
        """
        disparity, disp_focus, k = self.check_inputs(aif, disparity, disp_focus, k)
        batch = aif.shape[0]
        aif_latents = self.encode(aif) if aif_latents is None else aif_latents
        if vd_latents is None:
            vd_latents = self.encode(vd_image(disparity, disp_focus).to(aif.dtype))
        return {
            # [B, T, 4, h, w] x 2 -> [B, T, 8, h, w], all-in-focus first as in SVD's conv_in
            "sample": torch.cat([aif_latents, vd_latents], dim=2).to(self.dtype),
            "timestep": torch.full((batch,), self.options.timestep, dtype=self.dtype, device=aif.device),
            "encoder_hidden_states": self.image_context(aif) if context is None else context,
            "added_time_ids": self.added_time_ids(batch, aif.device),
            "k": k,
            # disparity: [B, T, 1, H, W] -> regions [B, T, H, W]
            "mpi_regions": mpi_regions(disparity[:, :, 0], disp_focus, self.options.n_planes, self.options.mpi_alpha),
            "cond_latents": aif_latents.to(self.dtype),
        }

    def predict_latents(self, *args: Any, **kwargs: Any) -> Tensor:
        """One UNet step: the bokeh latents [B, T, 4, h, w] (scaled like `encode`'s).

        Arguments as in `unet_inputs`: (aif, disparity, disp_focus, k, *, aif_latents=None).
        """
        return self.unet(**self.unet_inputs(*args, **kwargs))

    def forward(
        self, aif: Tensor, disparity: Tensor, disp_focus: Tensor | float, k: Tensor | float
    ) -> AnyToBokehOutput:
        """Render bokeh frames [B, T, 3, H, W] in [-1, 1]; arguments as in `predict_latents`."""
        encoded = self.encode_with_skips(aif)
        latents = self.predict_latents(aif, disparity, disp_focus, k, aif_latents=encoded.latents)
        frames = self.decode(latents, skips=encoded.skips)
        return AnyToBokehOutput(frames=frames, latents=latents)
