"""The frozen encoders held in the run's half precision while a stage fits, their float32 weights kept aside.

Under `bf16-mixed` (or `16-mixed`) autocast casts every float32 weight to the half dtype at every call. The frozen
VAE and CLIP image encoder never change, so a fit casts them once instead (`hold_in_half`). Their float32 weights
stay on the CPU: every checkpoint saved during the fit carries them (`restore_in_checkpoint`), so the next stage
starts from the exact pretrained weights, and the end of the fit puts them back (`restore`). Only frozen modules
under the VAE and the image encoder are cast; the UNet's frozen blocks stay in float32 beside its trained ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

HALF_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def half_dtype(precision: str) -> torch.dtype | None:
    """The half dtype of a Lightning mixed precision ("bf16-mixed", "16-mixed"), else None."""
    return HALF_DTYPES.get(str(precision))


def frozen_roots(module: nn.Module) -> Iterable[nn.Module]:
    """The largest submodules that hold parameters, none of them trainable."""
    parameters = list(module.parameters())
    if parameters and not any(p.requires_grad for p in parameters):
        yield module
        return
    for child in module.children():
        yield from frozen_roots(child)


def hold_in_half(net: nn.Module, dtype: torch.dtype | None, roots: Iterable[str] = ("vae", "image_encoder")) -> dict:
    """Cast the frozen modules under `net.<root>` to `dtype`; returns their float32 tensors {name in net: CPU copy}.

    A `dtype` of None (a float32 or pure half run) casts nothing and returns {}.
    """
    if dtype is None:
        return {}
    names = {id(module): name for name, module in net.named_modules()}
    kept: dict[str, Tensor] = {}
    for root in roots:
        top = getattr(net, root, None)
        if top is None:
            continue
        for module in frozen_roots(top):
            prefix = names[id(module)]
            for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
                if tensor.is_floating_point() and tensor.dtype != dtype:
                    kept[f"{prefix}.{name}"] = tensor.detach().to("cpu", copy=True)
            module.to(dtype)
    return kept


def restore(net: nn.Module, kept: dict[str, Tensor]) -> None:
    """Put the kept float32 tensors back into `net` (the end of a fit)."""
    tensors = dict(net.named_parameters())
    tensors.update(dict(net.named_buffers()))
    with torch.no_grad():
        for name, value in kept.items():
            tensor = tensors[name]
            if isinstance(tensor, nn.Parameter):
                tensor.data = value.to(tensor.device)
            else:
                owner, _, leaf = name.rpartition(".")
                net.get_submodule(owner)._buffers[leaf] = value.to(tensor.device)


def restore_in_checkpoint(checkpoint: dict[str, Any], kept: dict[str, Tensor], prefix: str = "net.") -> None:
    """A checkpoint's state dict with the kept float32 tensors in place of their half copies."""
    state = checkpoint.get("state_dict", {})
    for name, value in kept.items():
        if prefix + name in state:
            state[prefix + name] = value.clone()
