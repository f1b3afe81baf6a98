"""Saving and loading AnyToBokeh: its config, the folder format and Lightning checkpoints.

A model's `config` describes what it is, not where it came from: the diffusers configs of the UNet and
the VAE, the CLIP vision config and the feature-extractor settings (or none), and every option, the
MPI blocks' `ff_mult` and `max_key_tokens` included. Loading builds that architecture with its
parameters on the meta device (no memory, no random initialisation) and then takes a copy of the
stored tensors as its parameters (`load_state_dict(..., assign=True)`). So a checkpoint of SVD's size
loads without building a random 1.5 B-parameter model first, and without the SVD folder it was trained
from. Buffers are built as usual: the non-persistent ones (CLIP's position ids, the CLIP mean and std)
are never stored.

Formats:
- a folder (`save_pretrained`): `unet/`, `vae/` (diffusers configs and weights, each still loadable by
  diffusers alone), `image_encoder/` and `feature_extractor/` (transformers), the new modules in
  `any2bokeh_new_modules.safetensors`, and `{"format", "version", "options"}` in `any2bokeh_config.json`;
- a Lightning checkpoint: `state_dict` under the module's prefix (`net.`), and `model.config` under
  `any2bokeh_config` (written by the training module's `on_save_checkpoint`).

Version 1 folders (options without `ff_mult`/`max_key_tokens`, which then always had their defaults)
still load. Version 1 checkpoints recorded only their source (an SVD folder or the tiny seed): they load
with an explicit `model=` and are converted by saving that model (see `from_checkpoint`'s error).
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import torch
from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from .loading import parse_dtype
from .tiny import CLIPImageProcessor

CONFIG_NAME = "any2bokeh_config.json"
NEW_MODULES_NAME = "any2bokeh_new_modules.safetensors"
DIFFUSERS_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
# the Lightning checkpoint entry that holds `model.config`
CHECKPOINT_CONFIG_KEY = "any2bokeh_config"
FORMAT_VERSION = 2


@contextmanager
def empty_parameters() -> Iterator[None]:
    """Build modules with every parameter on the meta device; buffers are created as usual.

    Initialisers then run on meta tensors, which costs nothing. The parameters must be replaced by real
    tensors afterwards (`load_state_dict(..., assign=True)`).
    """
    register = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, parameter: nn.Parameter | None) -> None:
        if parameter is not None and not parameter.is_meta:
            parameter = nn.Parameter(parameter.to("meta"), requires_grad=parameter.requires_grad)
        register(module, name, parameter)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def _read_json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"missing {path} ({what})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} ({what}) is not valid JSON: {error}") from error


# Options added after models were first saved, with the behaviour those models were trained with.
LEGACY_OPTIONS = {"key_mask": "any", "k_residual": False, "k_encoding": "raw", "k_gain": False}


def _options_of(config: dict[str, Any], where: str) -> dict[str, Any]:
    """The options of a saved config of any version; version 1 kept them beside format and version.

    An option the config predates gets the value its model was trained with (`LEGACY_OPTIONS`).
    """
    return {**LEGACY_OPTIONS, **_saved_options(config, where)}


def _saved_options(config: dict[str, Any], where: str) -> dict[str, Any]:
    config = dict(config)
    if config.pop("format", None) != "any2bokeh":
        raise ValueError(f"{where} is not an any2bokeh config (no 'format': 'any2bokeh')")
    version = config.pop("version", None)
    if version == 1:
        config.pop("source", None)
        return config
    if version == FORMAT_VERSION:
        return dict(config["options"])
    raise ValueError(f"{where}: unknown any2bokeh config version {version!r} (this code reads 1 and {FORMAT_VERSION})")


def _without_origin(config: dict[str, Any]) -> dict[str, Any]:
    """A component's config without the folder it was read from (`_name_or_path`)."""
    return {key: value for key, value in config.items() if key != "_name_or_path"}


class SerializationMixin:
    """`config`, `save_pretrained`, `from_pretrained` and `from_checkpoint` of `AnyToBokeh`.

    The model class provides `unet` (a BokehUNet), `vae` (a SkipVAE), `image_encoder`, `feature_extractor`,
    `options` (a dataclass), `pretrained_parameter_names()`, `new_parameter_names()` and
    `enable_gradient_checkpointing()`; its constructor takes (unet, vae, image_encoder, feature_extractor,
    **options).
    """

    @property
    def config(self) -> dict[str, Any]:
        """The whole architecture as plain JSON-able values; `from_checkpoint` rebuilds the model from it."""
        return {
            "format": "any2bokeh",
            "version": FORMAT_VERSION,
            "options": asdict(self.options),
            "unet": _without_origin(self.unet.unet.config),
            "vae": _without_origin(self.vae.vae.config),
            "image_encoder": _without_origin(self.image_encoder.config.to_dict()) if self.image_encoder else None,
            "feature_extractor": self.feature_extractor.to_dict() if self.image_encoder else None,
        }

    @classmethod
    def _empty_from_config(cls, config: dict[str, Any], where: str):
        """The architecture of `config` with its parameters on the meta device (to be filled by `_take_tensors`)."""
        missing = [key for key in ("unet", "vae", "image_encoder") if key not in config]
        if missing:
            raise ValueError(f"{where}: the config lacks {missing}")
        options = _options_of(config, where)
        options.pop("use_image_encoder", None)  # the image encoder's config says it
        clip_config = config["image_encoder"]
        with empty_parameters():
            unet = UNetSpatioTemporalConditionModel.from_config(config["unet"])
            vae = AutoencoderKLTemporalDecoder.from_config(config["vae"])
            image_encoder, feature_extractor = None, None
            if clip_config is not None:
                image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig.from_dict(clip_config))
                feature_extractor = CLIPImageProcessor.from_dict(config["feature_extractor"])
            try:
                return cls(unet, vae, image_encoder, feature_extractor, **options)
            except TypeError as error:  # an unknown option
                raise ValueError(f"{where}: {error}") from error

    def _take_tensors(self, state: dict[str, Tensor], where: str, dtype: torch.dtype | str | None) -> None:
        """Make the stored tensors the model's parameters; every parameter must be stored.

        Each tensor is copied once (cast to `dtype` on the way): the files are memory-mapped, and a model
        whose weights stayed mapped would crash when the file is rewritten (a run saving `last.ckpt` again).
        """
        dtype = parse_dtype(dtype)
        state = {
            key: value.to(dtype=dtype if dtype and value.is_floating_point() else value.dtype, copy=True)
            for key, value in state.items()
        }
        try:
            result = self.load_state_dict(state, strict=False, assign=True)
        except RuntimeError as error:  # tensors of another shape
            raise ValueError(f"{where} does not fit the architecture of its config: {error}") from error
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"{where} does not match the architecture of its config: missing {len(result.missing_keys)} "
                f"{result.missing_keys[:5]}, unexpected {len(result.unexpected_keys)} {result.unexpected_keys[:5]}"
            )
        empty = [name for name, tensor in [*self.named_parameters(), *self.named_buffers()] if tensor.is_meta]
        if empty:
            raise RuntimeError(f"{where}: tensors left without values after loading: {empty[:5]}")

    def _set_dtype_and_checkpointing(self, dtype: torch.dtype | str | None, gradient_checkpointing: bool | str):
        """The last step of every constructor: cast the weights (None: keep them) and switch checkpointing on.

        gradient_checkpointing: True or "all", "deep" (all UNet levels but the outermost), False or "none".
        """
        if dtype is not None:
            self.to(parse_dtype(dtype))
        if gradient_checkpointing not in (False, None, "none"):
            self.enable_gradient_checkpointing("all" if gradient_checkpointing is True else gradient_checkpointing)
        return self

    # ---------------------------------------------------------------- folders

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Save the whole model to a folder (layout in the module docstring); returns the folder."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        state = self.state_dict()
        for name, module in (("unet", self.unet.unet), ("vae", self.vae.vae)):
            prefix = f"{name}.{name}."
            (folder / name).mkdir(exist_ok=True)
            module.save_config(folder / name)
            tensors = {
                key[len(prefix) :]: state[key].contiguous()
                for key in self.pretrained_parameter_names()
                if key.startswith(prefix)
            }
            save_file(tensors, folder / name / DIFFUSERS_WEIGHTS_NAME, metadata={"format": "pt"})
        if self.image_encoder is not None:
            self.image_encoder.save_pretrained(folder / "image_encoder", safe_serialization=True)
            self.feature_extractor.save_pretrained(folder / "feature_extractor")
        new_tensors = {key: state[key].detach().clone().contiguous() for key in self.new_parameter_names()}
        save_file(new_tensors, folder / NEW_MODULES_NAME, metadata={"format": "pt"})
        config = {"format": "any2bokeh", "version": FORMAT_VERSION, "options": asdict(self.options)}
        # written last and renamed into place: a folder with this file is complete
        partial = folder / (CONFIG_NAME + ".partial")
        partial.write_text(json.dumps(config, indent=2) + "\n")
        partial.replace(folder / CONFIG_NAME)
        return folder

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        gradient_checkpointing: bool = False,
        dtype: torch.dtype | str | None = None,
    ):
        """Load a folder written by `save_pretrained`: the architecture from its configs, then its tensors."""
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"no AnyToBokeh folder at {os.fspath(path)!r}")
        config_path = folder / CONFIG_NAME
        if not config_path.is_file():
            hint = " (it looks like an SVD folder: use AnyToBokeh.from_svd)" if (folder / "unet").is_dir() else ""
            raise FileNotFoundError(f"missing {config_path}: not a saved AnyToBokeh folder{hint}")
        options = _options_of(_read_json(config_path, "the model's options"), str(config_path))
        use_clip = options.get("use_image_encoder", True)
        config = {
            "format": "any2bokeh",
            "version": FORMAT_VERSION,
            "options": options,
            "unet": _read_json(folder / "unet" / "config.json", "the UNet config"),
            "vae": _read_json(folder / "vae" / "config.json", "the VAE config"),
            "image_encoder": _read_json(folder / "image_encoder" / "config.json", "the CLIP config")
            if use_clip
            else None,
            "feature_extractor": (
                _read_json(folder / "feature_extractor" / "preprocessor_config.json", "the CLIP preprocessing")
                if use_clip
                else None
            ),
        }
        model = cls._empty_from_config(config, str(config_path))

        files = {
            "unet.unet.": [folder / "unet" / DIFFUSERS_WEIGHTS_NAME],
            "vae.vae.": [folder / "vae" / DIFFUSERS_WEIGHTS_NAME],
        }
        if use_clip:
            # transformers may shard: model.safetensors or model-0000i-of-0000n.safetensors
            files["image_encoder."] = sorted((folder / "image_encoder").glob("model*.safetensors")) or [
                folder / "image_encoder" / "model.safetensors"
            ]
        files[""] = [folder / NEW_MODULES_NAME]
        state: dict[str, Tensor] = {}
        for prefix, paths in files.items():
            for file in paths:
                if not file.is_file():
                    raise FileNotFoundError(f"missing {file} (weights of the saved model)")
                state.update((prefix + key, value) for key, value in load_file(file).items())
        model._take_tensors(state, f"the weights in {folder}", dtype)
        return model._set_dtype_and_checkpointing(dtype, gradient_checkpointing)

    # ---------------------------------------------------------------- Lightning checkpoints

    @classmethod
    def from_checkpoint(
        cls,
        ckpt_path: str | os.PathLike,
        model: Any = None,
        *,
        prefix: str = "net.",
        strict: bool = True,
        gradient_checkpointing: bool = False,
        dtype: torch.dtype | str | None = None,
    ):
        """Load the network of a Lightning checkpoint (`state_dict` keys `prefix + name`).

        Args:
            ckpt_path: the .ckpt file (a trusted file: it is unpickled). Its tensors are memory-mapped.
            model: None rebuilds the architecture from the checkpoint's `any2bokeh_config` entry and takes the
                tensors without a copy. Otherwise the architecture to copy them into: an AnyToBokeh (filled in
                place), a saved AnyToBokeh folder, or an SVD folder or hub id (built with the checkpoint's
                options, its pretrained weights then overwritten).
            prefix: the attribute path of the network in the LightningModule, with a trailing dot.
            strict: with `model`, every tensor of the model must be in the checkpoint and vice versa (always so
                when the model is rebuilt from the config).
            gradient_checkpointing, dtype: as in `from_pretrained`.
        """
        ckpt_path = Path(ckpt_path)
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"no checkpoint file at {os.fspath(ckpt_path)!r}")
        # mmap: the optimizer state in the file is never read into memory
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
        if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
            keys = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
            raise ValueError(f"{ckpt_path} is not a Lightning checkpoint: no 'state_dict' (found {keys})")
        # torch.compile wraps a module as `_orig_mod`; its checkpoints carry that segment in every key
        state = {
            key[len(prefix) :].replace("_orig_mod.", ""): value
            for key, value in checkpoint["state_dict"].items()
            if key.startswith(prefix)
        }
        if not state:
            found = sorted({key.split(".")[0] + "." for key in checkpoint["state_dict"]})
            raise ValueError(f"{ckpt_path}: no state_dict keys start with prefix={prefix!r} (prefixes found: {found})")
        config = checkpoint.get(CHECKPOINT_CONFIG_KEY)
        where = f"{ckpt_path} (prefix {prefix!r})"

        if model is None:
            if config is None:
                raise ValueError(
                    f"{ckpt_path} has no {CHECKPOINT_CONFIG_KEY!r} entry to rebuild the model from: store "
                    f"`checkpoint[{CHECKPOINT_CONFIG_KEY!r}] = net.config` in the LightningModule's "
                    "on_save_checkpoint, or pass model= (an AnyToBokeh, a saved AnyToBokeh folder or an SVD folder)"
                )
            if "source" in config:
                raise ValueError(
                    f"{ckpt_path} is a version-1 checkpoint: its {CHECKPOINT_CONFIG_KEY!r} records where the model "
                    f"came from ({config['source']}), not its architecture. Load it with the model it was trained "
                    "from and save it once to convert it: `AnyToBokeh.from_checkpoint(ckpt, model=<that SVD folder "
                    "or hub id, or AnyToBokeh.tiny(...)>).save_pretrained(<folder>)`, then use the folder "
                    "(init_from=<folder>, AnyToBokeh.from_pretrained)"
                )
            rebuilt = cls._empty_from_config(config, f"{ckpt_path} [{CHECKPOINT_CONFIG_KEY!r}]")
            rebuilt._take_tensors(state, where, dtype)
            return rebuilt._set_dtype_and_checkpointing(dtype, gradient_checkpointing)

        if not isinstance(model, cls):
            folder = Path(model).expanduser()
            if (folder / CONFIG_NAME).is_file():
                model = cls.from_pretrained(folder)
            else:
                # the checkpoint's options (planes, image encoder, ...) on the SVD found at `model`
                options = _options_of(config, where) if config else {}
                model = cls.from_svd(model, **options)
        try:
            result = model.load_state_dict(state, strict=False)
        except RuntimeError as error:  # tensors of another shape: another architecture or option
            raise ValueError(f"{where} does not fit the model: {error}") from error
        if strict and (result.missing_keys or result.unexpected_keys):
            raise ValueError(
                f"{where} does not match the model: missing {len(result.missing_keys)} "
                f"{result.missing_keys[:5]}, unexpected {len(result.unexpected_keys)} {result.unexpected_keys[:5]}"
            )
        return model._set_dtype_and_checkpointing(dtype, gradient_checkpointing)
