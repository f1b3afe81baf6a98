"""Reading a diffusers-format Stable Video Diffusion (img2vid or img2vid-xt) from a folder or the hub cache.

Each component loads with its library's `from_pretrained`; a component whose weights do not match its
config key for key is refused, and a missing folder, config or weight file is named in the error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
from transformers import CLIPVisionModelWithProjection

from .tiny import CLIPImageProcessor

SVD_XT = "stabilityai/stable-video-diffusion-img2vid-xt"
# subfolders of a diffusers-format SVD that the model reads
SVD_SUBFOLDERS = ("unet", "vae", "image_encoder", "feature_extractor")

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def parse_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """A torch dtype from a dtype, None, or a name: float32/fp32/32, float16/fp16/half/16, bfloat16/bf16."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).lower().removeprefix("torch.")
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    return _DTYPES[name]


def _is_hub_id(name: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", name)) and not name.startswith((".", "~"))


def _check_svd_folder(folder: Path, subfolders: tuple[str, ...], variant: str | None) -> None:
    """Fail early, naming the folder, when a local SVD folder lacks a subfolder, a config or weights."""
    missing = [name for name in subfolders if not (folder / name).is_dir()]
    if missing:
        present = sorted(path.name for path in folder.iterdir() if path.is_dir())
        raise FileNotFoundError(
            f"{folder} is not a diffusers-format Stable Video Diffusion folder: missing subfolder(s) {missing}; "
            f"expected {list(subfolders)} (found {present})"
        )
    configs = {"feature_extractor": "preprocessor_config.json"}
    for name in subfolders:
        config = folder / name / configs.get(name, "config.json")
        if not config.is_file():
            raise FileNotFoundError(f"missing {config} (the {name} config)")
        if name == "feature_extractor":
            continue
        files = [path for path in (folder / name).iterdir() if path.suffix in (".safetensors", ".bin")]
        # "model.safetensors" or shards "model-00001-of-00002.safetensors"; a variant adds ".fp16" to the stem
        variants = {path.stem.split(".", 1)[1].split("-")[0] if "." in path.stem else None for path in files}
        if variant not in variants:
            wanted = f"{variant} " if variant else ""
            present = sorted(name for name in variants if name)
            found = f" (variants present: {present}: pass variant=)" if present else ""
            raise FileNotFoundError(f"no {wanted}weights (*.safetensors or *.bin) in {folder / name}{found}")


def _check_loading_info(source: str, info: dict) -> None:
    problems = {key: sorted(info.get(key) or []) for key in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    problems = {key: names for key, names in problems.items() if names}
    if problems:
        summary = "; ".join(f"{key} ({len(names)}): {names[:5]}" for key, names in problems.items())
        raise ValueError(f"weights at {source} do not match the model: {summary}")


def _into_own_memory(module: torch.nn.Module) -> torch.nn.Module:
    """Copy every tensor of `module` into memory of its own, allocated by torch.

    `from_pretrained` leaves the weights as private maps of the safetensors files, at the file's offsets
    (8-byte aligned, where torch's allocator aligns to 64). MKL's GEMMs take alignment-dependent code paths
    on some CPUs (AMD's, or MKL_ENABLE_INSTRUCTIONS=SSE4_2 on Intel's), so a mapped model and the same
    tensors in owned memory round differently. A mapped model would also crash if the file were rewritten.
    """
    with torch.no_grad():
        for tensor in (*module.parameters(), *module.buffers()):
            tensor.data = tensor.data.clone(memory_format=torch.contiguous_format)
    return module


def load_svd_components(
    pretrained: str | os.PathLike,
    *,
    use_image_encoder: bool = True,
    dtype: torch.dtype | str | None = None,
    variant: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Load SVD's UNet, VAE and (optionally) image encoder and feature extractor with `from_pretrained`.

    Args:
        pretrained: a local diffusers-format SVD folder (img2vid or img2vid-xt layout: unet/, vae/,
            image_encoder/, feature_extractor/) or a hub id, which must be in the local cache when offline.
        use_image_encoder: also load image_encoder/ and feature_extractor/.
        dtype: weights dtype (None: float32, whatever the files or configs hold).
        variant: weight-file variant, e.g. "fp16" for `diffusion_pytorch_model.fp16.safetensors`.
        cache_dir: the hub cache to read a hub id from (None: the default, HF_HUB_CACHE).

    Every component must load with no missing, unexpected or mismatched keys.
    """
    dtype = parse_dtype(dtype)
    subfolders = SVD_SUBFOLDERS if use_image_encoder else SVD_SUBFOLDERS[:2]
    name = os.fspath(pretrained)
    if Path(name).expanduser().exists():
        folder = Path(name).expanduser()
        if not folder.is_dir():
            raise NotADirectoryError(f"pretrained={name!r} is a file; expected a folder with {list(subfolders)}")
        _check_svd_folder(folder, subfolders, variant)
        source = str(folder)
    elif _is_hub_id(name):
        source = name
    else:
        raise FileNotFoundError(
            f"pretrained={name!r}: no such folder, and not a hub id (owner/name); expected a diffusers-format "
            f"Stable Video Diffusion folder with {list(subfolders)}"
        )

    def load(subfolder: str, loader):
        try:
            return loader()
        except OSError as error:
            raise FileNotFoundError(
                f"could not load {subfolder}/ of {source!r}: {error}. Expected a diffusers-format Stable Video "
                f"Diffusion (e.g. {SVD_XT}) with {list(subfolders)}: a local folder, or a hub id present in the "
                f"hub cache when offline"
            ) from error

    weights = {"torch_dtype": dtype, "variant": variant, "output_loading_info": True, "cache_dir": cache_dir}
    components: dict[str, Any] = {"image_encoder": None, "feature_extractor": None}
    for subfolder, cls in (("unet", UNetSpatioTemporalConditionModel), ("vae", AutoencoderKLTemporalDecoder)):
        model, info = load(subfolder, lambda: cls.from_pretrained(source, subfolder=subfolder, **weights))
        _check_loading_info(f"{source}/{subfolder}", info)
        components[subfolder] = _into_own_memory(model)
    if use_image_encoder:
        # diffusers loads into float32 when no dtype is given; transformers would take the dtype written in
        # the config, float16 where fp16 variants were saved beside the full-precision files, and round to it
        clip_weights = {**weights, "torch_dtype": dtype or torch.float32}
        encoder, info = load(
            "image_encoder",
            lambda: CLIPVisionModelWithProjection.from_pretrained(source, subfolder="image_encoder", **clip_weights),
        )
        _check_loading_info(f"{source}/image_encoder", info)
        components["image_encoder"] = _into_own_memory(encoder)
        components["feature_extractor"] = load(
            "feature_extractor",
            lambda: CLIPImageProcessor.from_pretrained(source, subfolder="feature_extractor", cache_dir=cache_dir),
        )
    return components
