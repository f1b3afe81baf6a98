"""The authors' released weights (vivoCameraResearch/any-to-bokeh): loading, and converting to a saved model.

The release is one archive, unpacked as a folder with `unet/unet/` (their UNet: stock SVD-xt keys plus 402
tensors) and `vae/` (the SVD VAE plus 4 skip convs), each a diffusers config and its weights. CLIP's image
encoder and feature extractor are not in it: they come from a stock SVD img2vid-xt folder (`svd`).

Every tensor of the release is accounted for. Stock keys go to their places under `unet.unet.` and
`vae.vae.`; the added ones map by `FUSER_NAMES` (the MPI block of each spatial transformer block, `P.fuser.*`
-> `unet.mpi_blocks.<i>.*`), `conv_in_mpi` -> `unet.cond_embed` and `decoder.skip_conv_<j+1>` ->
`vae.skip_convs.<j>`. `ff_k` is never called by the release and is dropped, and so are `linear` and
`conv_in_mpi` while the condition tokens are off (the release's zero key mask left them without effect).
Any other tensor left over, or any missing, is an error that names it. The model is built on the meta device
and takes the stored tensors as its parameters, as `from_pretrained` does.

`AnyToBokeh.from_release` loads with this; `python -m any2bokeh.models.release` converts (release.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor

from .loading import parse_dtype
from .options import RELEASE_OPTIONS, AnyToBokehOptions
from .serialization import CONFIG_NAME, FORMAT_VERSION

RELEASE_UNET = Path("unet") / "unet"
RELEASE_VAE = Path("vae")
#: our MPI block's parameter -> the release's `fuser` parameter
FUSER_NAMES = {
    "k_proj.0.": "k_encoder.",
    "cond_proj.0.": "linear.",
    "to_q.": "mpi_attn.to_q.",
    "to_k.": "mpi_attn.to_k.",
    "to_v.": "mpi_attn.to_v.",
    "to_out.": "mpi_attn.to_out.0.",
    "norm_attn.": "norm1.",
    "norm_ff.": "norm2.",
    "norm_ff2.": "norm_k.",
    "ff.": "ff.",
    "gate_attn": "alpha_attn",
    "gate_ff": "alpha_dense",
}


def is_release_folder(path: str | os.PathLike) -> bool:
    """True for a folder in the release's layout (`unet/unet/` and `vae/` configs, no any2bokeh config)."""
    path = Path(path)
    return (path / RELEASE_UNET / "config.json").is_file() and not (path / CONFIG_NAME).exists()


def _read_config(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"missing {path} ({what})")
    return json.loads(path.read_text())


def _read_weights(folder: Path, what: str, stem: str) -> dict[str, Tensor]:
    """Every tensor of the weight files in `folder` (`<stem>*.safetensors`, else `*.bin`): full precision
    files first, a variant (`<stem>.fp16.safetensors`) when it is the only one."""
    files = sorted(folder.glob(f"{stem}*.safetensors"))
    full = [file for file in files if "." not in file.name.removesuffix(".safetensors")]
    files = full or files
    if not files:
        files = sorted(folder.glob("*.bin"))
    if not files:
        raise FileNotFoundError(f"no weights (*.safetensors or *.bin) in {folder} ({what})")
    state: dict[str, Tensor] = {}
    for file in files:
        if file.suffix == ".bin":
            state.update(torch.load(file, map_location="cpu", weights_only=True, mmap=True))
        else:
            state.update(load_file(file))
    return state


def release_names(model) -> dict[str, str]:
    """Our state-dict key -> the release's key (`unet:<key>` or `vae:<key>`), for every UNet and VAE tensor."""
    names = {}
    blocks = {f"unet.mpi_blocks.{i}.": path.removeprefix("unet.") for i, path in enumerate(model.unet.mpi_block_paths)}
    for key in model.state_dict():
        if key.startswith("unet.unet."):
            names[key] = "unet:" + key.removeprefix("unet.unet.")
        elif key.startswith("unet.cond_embed."):
            names[key] = "unet:conv_in_mpi." + key.removeprefix("unet.cond_embed.")
        elif key.startswith("unet.mpi_blocks."):
            prefix = ".".join(key.split(".")[:3]) + "."
            rest = key.removeprefix(prefix)
            ours = next((name for name in FUSER_NAMES if rest.startswith(name)), None)
            if ours is None:
                raise ValueError(f"{key} has no place in the release's MPI block (options not the release's?)")
            names[key] = f"unet:{blocks[prefix]}.fuser.{FUSER_NAMES[ours]}{rest.removeprefix(ours)}"
        elif key.startswith("vae.vae."):
            names[key] = "vae:" + key.removeprefix("vae.vae.")
        elif key.startswith("vae.skip_convs."):
            index, rest = key.removeprefix("vae.skip_convs.").split(".", 1)
            names[key] = f"vae:decoder.skip_conv_{int(index) + 1}.{rest}"
        elif not key.startswith("image_encoder."):
            raise ValueError(f"{key} has no place in the release (options not the release's?)")
    return names


@dataclass
class ReleaseReport:
    """What loading a release found: its parameter count and the groups dropped (name -> parameters)."""

    parameters: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


def _dropped_group(key: str, cond_tokens: bool) -> str | None:
    """The dropped group a release key belongs to, or None when it must be used."""
    if ".fuser.ff_k." in key:
        return "ff_k"
    if not cond_tokens and ".fuser.linear." in key:
        return "linear"
    if not cond_tokens and key.startswith("unet:conv_in_mpi."):
        return "conv_in_mpi"
    return None


def _clip_state(svd: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Tensor]]:
    """CLIP's vision config, feature-extractor settings and tensors from a stock SVD folder."""
    if not svd.is_dir():
        raise FileNotFoundError(
            f"svd={os.fspath(svd)!r} is not a folder: the release has no CLIP image encoder, so it needs a stock "
            "Stable Video Diffusion img2vid-xt folder for image_encoder/ and feature_extractor/"
        )
    for name in ("image_encoder", "feature_extractor"):
        if not (svd / name).is_dir():
            raise FileNotFoundError(f"{svd} lacks {name}/: svd= must be a stock SVD img2vid-xt folder")
    clip_config = _read_config(svd / "image_encoder" / "config.json", "the CLIP config of the SVD folder")
    extractor = _read_config(svd / "feature_extractor" / "preprocessor_config.json", "the CLIP preprocessing")
    state = _read_weights(svd / "image_encoder", "the SVD folder's CLIP image encoder", "model")
    # older transformers stored the position ids, a buffer the model no longer saves
    state = {key: value for key, value in state.items() if not key.endswith("position_ids")}
    return clip_config, extractor, state


def load_release(
    cls,
    folder: str | os.PathLike,
    svd: str | os.PathLike | None,
    *,
    dtype: torch.dtype | str | None = None,
    report: ReleaseReport | None = None,
    **options: Any,
):
    """Build `cls` (AnyToBokeh) with the release's options and weights; see the module docstring.

    Args:
        folder: the unpacked release, with `unet/unet/` and `vae/`.
        svd: a stock SVD img2vid-xt folder, read for `image_encoder/` and `feature_extractor/` only.
        dtype: the weights' dtype (None: float32).
        report: filled with the release's parameter count and the dropped groups.
        options: `AnyToBokehOptions` fields over `RELEASE_OPTIONS` (e.g. `cond_tokens=True`).
    """
    folder = Path(folder).expanduser()
    if not (folder / RELEASE_UNET).is_dir() or not (folder / RELEASE_VAE).is_dir():
        raise FileNotFoundError(
            f"{os.fspath(folder)!r} is not the authors' release: expected {RELEASE_UNET}/ and {RELEASE_VAE}/ in it "
            "(unpack their checkpoints archive as the authors' README lays it out)"
        )
    if svd is None:
        raise ValueError(
            "the authors' release has no CLIP image encoder: pass svd=<a stock Stable Video Diffusion img2vid-xt "
            "folder> (renderer.svd= on the command line); only its image_encoder/ and feature_extractor/ are read"
        )
    clip_config, extractor, clip_state = _clip_state(Path(svd).expanduser())
    config = {
        "format": "any2bokeh",
        "version": FORMAT_VERSION,
        "options": asdict(AnyToBokehOptions(**{**RELEASE_OPTIONS, **options})),
        "unet": _read_config(folder / RELEASE_UNET / "config.json", "the release's UNet config"),
        "vae": _read_config(folder / RELEASE_VAE / "config.json", "the release's VAE config"),
        "image_encoder": clip_config,
        "feature_extractor": extractor,
    }
    model = cls._empty_from_config(config, f"the release at {folder}")
    stored = {
        **{
            "unet:" + key: value for key, value in _read_weights(folder / RELEASE_UNET, "the UNet", "diffusion").items()
        },
        **{"vae:" + key: value for key, value in _read_weights(folder / RELEASE_VAE, "the VAE", "diffusion").items()},
    }
    names = release_names(model)
    missing = sorted(set(names.values()) - set(stored))
    report = report if report is not None else ReleaseReport()
    report.parameters = sum(value.numel() for value in stored.values())
    stray = []
    used = set(names.values())
    for key, value in stored.items():
        group = _dropped_group(key, model.options.cond_tokens)
        if group is not None and key not in used:
            report.dropped[group] = report.dropped.get(group, 0) + value.numel()
        elif key not in used:
            stray.append(key)
    if missing or stray:
        raise ValueError(
            f"the release at {folder} does not match its expected layout: missing {len(missing)} {missing[:5]}, "
            f"unexpected {len(stray)} {sorted(stray)[:5]} (unet: is {RELEASE_UNET}/, vae: is {RELEASE_VAE}/)"
        )
    state = {ours: stored[theirs] for ours, theirs in names.items()}
    state.update(("image_encoder." + key, value) for key, value in clip_state.items())
    model._take_tensors(state, f"the release at {folder} with CLIP from {svd}", parse_dtype(dtype) or torch.float32)
    return model
