"""An independent, naive implementation of the authors' released pipeline, from RELEASE.md's formulas.

It reads the release-layout files itself and runs diffusers' stock UNet, VAE and transformers' CLIP, with the
release's additions written out here by hand (none of `any2bokeh.models` is used):

- CLIP input: a 2-D Gaussian blur (sigma = max((s / size - 1) / 2, 0.001) per axis, int(max(4 sigma, 3)) taps
  made odd, reflect padding), bicubic with align_corners, (x + 1) / 2, no normalisation;
- E(K): sin and cos of K * 100 ** linspace(0, 1, 16) interleaved, every step rounded to float16;
- the MPI block after each spatial self-attention: x + k_encoder(E(K)); then
  x + tanh(alpha_attn) * attention over the frame's visual tokens of norm1(x); then
  x + tanh(alpha_dense) * (ff(norm2(x)) + ff(norm_k(x)));
- the spatial cross-attention sees the frame's own CLIP token, the temporal blocks frame 0's;
- added time ids (6, 127, 0), timestep 1, posterior mode, x 0.18215;
- the decoder adds skip_conv_{j+1}(input of encoder down block n-1-j) before up block j.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
from safetensors.torch import load_file
from transformers import CLIPVisionModelWithProjection

SCALING = 0.18215


def _round16(x: torch.Tensor) -> torch.Tensor:
    return x.half().double()


def _linspace16(i: int) -> torch.Tensor:
    """torch.linspace(0, 1, 16) in float16 as torch computes it: the step rounded to float16, then
    0 + step * i for the first half and 1 - step * (15 - i) for the second, each operation rounded."""
    step = _round16(torch.tensor(1 / 15, dtype=torch.float64))
    if i < 8:
        return _round16(_round16(step * i))
    return _round16(1 - _round16(step * (15 - i)))


def k_embedding(k: torch.Tensor) -> torch.Tensor:
    """[N] -> float32 [N, 32], the release's E(K) with its float16 rounding at every step."""
    k = _round16(k.double())
    values = []
    for i in range(16):
        frequency = _round16(torch.tensor(100.0, dtype=torch.float64) ** _linspace16(i))
        angle = _round16(k * frequency)
        values += [_round16(torch.sin(angle)), _round16(torch.cos(angle))]
    return torch.stack(values, dim=-1).float()


def layer_norm(x, weight, bias):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * weight + bias


def feed_forward(x, fuser, name):
    hidden = x @ fuser[f"{name}.net.0.proj.weight"].T + fuser[f"{name}.net.0.proj.bias"]
    value, gate = hidden.chunk(2, dim=-1)
    gelu = 0.5 * gate * (1 + torch.erf(gate / math.sqrt(2)))
    return (value * gelu) @ fuser[f"{name}.net.2.weight"].T + fuser[f"{name}.net.2.bias"]


def mpi_block(x, fuser, k_emb, heads):
    """x [B*T, n, d], fuser: the block's tensors, k_emb [B*T, 32]."""
    x = x + (k_emb.to(x.dtype) @ fuser["k_encoder.weight"].T + fuser["k_encoder.bias"])[:, None]
    normed = layer_norm(x, fuser["norm1.weight"], fuser["norm1.bias"])
    q, k, v = (normed @ fuser[f"mpi_attn.to_{name}.weight"].T for name in "qkv")
    frames, tokens, dim = q.shape
    split = [t.reshape(frames, tokens, heads, dim // heads).transpose(1, 2) for t in (q, k, v)]
    weights = torch.softmax(split[0] @ split[1].transpose(-1, -2) / math.sqrt(dim // heads), dim=-1)
    attended = (weights @ split[2]).transpose(1, 2).reshape(frames, tokens, dim)
    attended = attended @ fuser["mpi_attn.to_out.0.weight"].T + fuser["mpi_attn.to_out.0.bias"]
    x = x + torch.tanh(fuser["alpha_attn"]) * attended
    dense = feed_forward(layer_norm(x, fuser["norm2.weight"], fuser["norm2.bias"]), fuser, "ff")
    dense = dense + feed_forward(layer_norm(x, fuser["norm_k.weight"], fuser["norm_k.bias"]), fuser, "ff")
    return x + torch.tanh(fuser["alpha_dense"]) * dense


def clip_input(frames: torch.Tensor, size: int) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] -> CLIP pixels by the release's formulas (a 2-D kernel, one conv)."""
    height, width = frames.shape[-2:]
    kernels = []
    for extent in (height, width):
        sigma = max((extent / size - 1.0) / 2.0, 0.001)
        taps = int(max(4.0 * sigma, 3.0))
        taps = taps + 1 if taps % 2 == 0 else taps
        x = torch.arange(taps, dtype=torch.float64) - taps // 2
        g = torch.exp(-(x**2) / (2 * sigma**2))
        kernels.append(g / g.sum())
    kernel = (kernels[0][:, None] * kernels[1][None, :]).to(frames.dtype)
    pad_y, pad_x = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = F.pad(frames, (pad_x, pad_x, pad_y, pad_y), mode="reflect")
    blurred = F.conv2d(padded, kernel.expand(3, 1, *kernel.shape), groups=3)
    resized = F.interpolate(blurred, size=(size, size), mode="bicubic", align_corners=True)
    return (resized + 1) / 2


class ReleasePipeline:
    """The release's computation on one window (B = 1), from the files in `release` and `svd`."""

    def __init__(self, release: Path, svd: Path) -> None:
        unet_state = load_file(release / "unet" / "unet" / "diffusion_pytorch_model.safetensors")
        vae_state = load_file(release / "vae" / "diffusion_pytorch_model.safetensors")
        self.unet = UNetSpatioTemporalConditionModel.from_config(
            UNetSpatioTemporalConditionModel.load_config(release / "unet" / "unet")
        )
        stock = {key: value for key, value in unet_state.items() if ".fuser." not in key and "conv_in_mpi" not in key}
        self.unet.load_state_dict(stock)
        self.vae = AutoencoderKLTemporalDecoder.from_config(AutoencoderKLTemporalDecoder.load_config(release / "vae"))
        self.vae.load_state_dict({key: value for key, value in vae_state.items() if "skip_conv" not in key})
        self.skips = [vae_state[f"decoder.skip_conv_{j + 1}.weight"] for j in range(len(self.vae.decoder.up_blocks))]
        self.clip = CLIPVisionModelWithProjection.from_pretrained(svd / "image_encoder")
        self.fusers = {}
        for key, value in unet_state.items():
            if ".fuser." in key:
                path, name = key.split(".fuser.")
                self.fusers.setdefault(path, {})[name] = value
        for module in (self.unet, self.vae, self.clip):
            module.eval().requires_grad_(False)

    def _encode(self, frames: torch.Tensor, cache: list | None) -> torch.Tensor:
        hooks = []
        if cache is not None:
            for block in self.vae.encoder.down_blocks:
                hooks.append(block.register_forward_pre_hook(lambda module, args: cache.append(args[0])))
        latents = self.vae.encode(frames).latent_dist.mean * SCALING
        for hook in hooks:
            hook.remove()
        return latents

    def _decode(self, latents: torch.Tensor, cache: list) -> torch.Tensor:
        hooks = []
        n = len(self.skips)
        for j, block in enumerate(self.vae.decoder.up_blocks):

            def add_skip(module, args, j=j):
                return (args[0] + F.conv2d(cache[n - 1 - j], self.skips[j]),) + tuple(args[1:])

            hooks.append(block.register_forward_pre_hook(add_skip))
        frames = self.vae.decode(latents / SCALING, num_frames=latents.shape[0]).sample
        for hook in hooks:
            hook.remove()
        return frames

    def _patch_spatial_blocks(self, context: torch.Tensor, k_emb: torch.Tensor) -> list:
        originals = []
        for path, fuser in self.fusers.items():
            block = self.unet.get_submodule(path)

            def forward(hidden_states, *args, block=block, fuser=fuser, **kwargs):
                x = block.attn1(block.norm1(hidden_states)) + hidden_states
                x = mpi_block(x, fuser, k_emb, block.num_attention_heads)
                x = block.attn2(block.norm2(x), encoder_hidden_states=context) + x
                return block.ff(block.norm3(x)) + x

            originals.append(block)
            block.forward = forward
        return originals

    @torch.no_grad()
    def __call__(self, aif, disparity, disp_focus, k):
        """aif [T, 3, H, W] in [-1, 1], disparity [T, 1, H, W] in [0, 1], disp_focus [T], k [T].

        Returns (bokeh latents [T, 4, h, w], frames [T, 3, H, W]).
        """
        cache: list = []
        aif_latents = self._encode(aif, cache)
        vd = (2 * (disparity - disp_focus[:, None, None, None]).abs() - 1).expand(-1, 3, -1, -1)
        vd_latents = self._encode(vd, None)
        size = self.clip.config.image_size
        tokens = self.clip(pixel_values=clip_input(aif, size)).image_embeds  # [T, C]
        blocks = self._patch_spatial_blocks(tokens[:, None], k_embedding(k))
        try:
            sample = torch.cat([aif_latents, vd_latents], dim=1)[None]
            latents = self.unet(
                sample,
                torch.tensor([1.0]),
                encoder_hidden_states=tokens[:1][None],  # repeated per frame: the temporal blocks see frame 0's
                added_time_ids=torch.tensor([[6.0, 127.0, 0.0]], dtype=aif.dtype),
            ).sample[0]
        finally:
            for block in blocks:
                del block.forward
        return latents, self._decode(latents, cache)
