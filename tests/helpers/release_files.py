"""A random-weight checkpoint in the layout and key names of the authors' release, at the tiny SVD's sizes.

`write_release(folder)` writes `folder/unet/unet/` (stock UNet keys plus, per spatial transformer block,
the 25 `fuser.*` tensors, and `conv_in_mpi`) and `folder/vae/` (stock VAE keys plus `decoder.skip_conv_*`),
as the release's `save_pretrained` did. Every added tensor is random and the gates are open, so each part
of the release's computation shows in the output.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from any2bokeh.models.tiny import tiny_unet, tiny_vae

WEIGHTS = "diffusion_pytorch_model.safetensors"
LATENT_CHANNELS = 4


def spatial_block_paths(unet) -> list[str]:
    """`P` of RELEASE.md: the first transformer block of every spatial transformer, down -> mid -> up."""
    paths = []
    stages = [(f"down_blocks.{i}", block) for i, block in enumerate(unet.down_blocks)]
    stages += [("mid_block", unet.mid_block)] + [(f"up_blocks.{i}", block) for i, block in enumerate(unet.up_blocks)]
    for name, stage in stages:
        for a, _ in enumerate(getattr(stage, "attentions", None) or []):
            paths.append(f"{name}.attentions.{a}.transformer_blocks.0")
    return paths


def fuser_tensors(dim: int, cond_dim: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The 25 tensors of one release MPI block (`fuser`) of width `dim`, random, with open gates."""

    def rand(*shape, scale=0.2):
        return torch.randn(*shape, generator=generator) * scale

    tensors = {
        "linear.weight": rand(dim, cond_dim),
        "linear.bias": rand(dim),
        "k_encoder.weight": rand(dim, 32),
        "k_encoder.bias": rand(dim),
        "mpi_attn.to_q.weight": rand(dim, dim),
        "mpi_attn.to_k.weight": rand(dim, dim),
        "mpi_attn.to_v.weight": rand(dim, dim),
        "mpi_attn.to_out.0.weight": rand(dim, dim),
        "mpi_attn.to_out.0.bias": rand(dim),
        "alpha_attn": torch.tensor(0.6),
        "alpha_dense": torch.tensor(0.4),
    }
    for norm in ("norm1", "norm2", "norm_k"):
        tensors[f"{norm}.weight"] = 1 + rand(dim)
        tensors[f"{norm}.bias"] = rand(dim)
    for ff in ("ff", "ff_k"):
        tensors[f"{ff}.net.0.proj.weight"] = rand(8 * dim, dim)
        tensors[f"{ff}.net.0.proj.bias"] = rand(8 * dim)
        tensors[f"{ff}.net.2.weight"] = rand(dim, 4 * dim)
        tensors[f"{ff}.net.2.bias"] = rand(dim)
    return tensors


def write_release(folder: str | Path, seed: int = 0, extra: dict | None = None, drop: tuple[str, ...] = ()) -> Path:
    """Write a release-layout checkpoint; `extra` adds UNet tensors, `drop` removes UNet keys (for the errors)."""
    folder = Path(folder)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet, vae = tiny_unet(), tiny_vae()
    unet.save_pretrained(folder / "unet" / "unet", safe_serialization=True)
    vae.save_pretrained(folder / "vae", safe_serialization=True)

    cond_dim = unet.config.block_out_channels[0]
    state = {key: value.contiguous() for key, value in unet.state_dict().items()}
    state["conv_in_mpi.weight"] = torch.randn(cond_dim, LATENT_CHANNELS, 3, 3, generator=generator) * 0.1
    state["conv_in_mpi.bias"] = torch.randn(cond_dim, generator=generator) * 0.1
    for path in spatial_block_paths(unet):
        block = unet.get_submodule(path)
        for name, tensor in fuser_tensors(block.dim, cond_dim, generator).items():
            state[f"{path}.fuser.{name}"] = tensor
    state.update(extra or {})
    for key in drop:
        del state[key]
    save_file(state, folder / "unet" / "unet" / WEIGHTS)

    vae_state = {key: value.contiguous() for key, value in vae.state_dict().items()}
    # encoder down block inputs, deepest first -> decoder up blocks (RELEASE.md §2, at the tiny widths)
    block_out = list(vae.config.block_out_channels)
    n = len(block_out)
    encoder_in = [block_out[max(i - 1, 0)] for i in range(n)]
    decoder_in = [block_out[::-1][max(j - 1, 0)] for j in range(n)]
    for j in range(n):
        shape = (decoder_in[j], encoder_in[n - 1 - j], 1, 1)
        vae_state[f"decoder.skip_conv_{j + 1}.weight"] = torch.randn(*shape, generator=generator) * 0.05
    save_file(vae_state, folder / "vae" / WEIGHTS)
    return folder
