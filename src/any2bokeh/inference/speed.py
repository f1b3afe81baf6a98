"""The model renderer's speed switches (conf/renderer/model.yaml), each with a default per device.

- `phase_upsample` (default on, exact): the decoder's nearest x2 + 3x3 conv upsamplers as four 2x2 phase convs
  (`any2bokeh.models.phase_upsample`).
- `channels_last` (default: on a GPU): conv weights and activations in NHWC, the layout cuDNN's tensor-core
  kernels want.
- `cudnn_benchmark` (default: on a GPU): cuDNN times its algorithms once per shape; a window's shapes repeat.
- `sdpa_backend` (default: PyTorch's choice): the attention kernel, e.g. "efficient" for the VAE mid-block's
  single 512-wide head, which flash attention does not take.
- `compile` (default off): `torch.compile` the UNet, the VAE encoder (with its skips) and the decoder (shapes are
  fixed per window); a failure to compile falls back to eager with a one-line warning.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)
SDPA_BACKENDS = ("flash", "efficient", "cudnn", "math")


@dataclass
class SpeedSettings:
    """None picks the device's default (`resolved`)."""

    phase_upsample: bool = True
    channels_last: bool | None = None
    cudnn_benchmark: bool | None = None
    sdpa_backend: str | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        if self.sdpa_backend is not None and self.sdpa_backend not in SDPA_BACKENDS:
            raise ValueError(f"sdpa_backend must be one of {SDPA_BACKENDS} or null, got {self.sdpa_backend!r}")

    def resolved(self, device: torch.device) -> "SpeedSettings":
        gpu = device.type == "cuda"
        return SpeedSettings(
            phase_upsample=self.phase_upsample,
            channels_last=gpu if self.channels_last is None else self.channels_last,
            cudnn_benchmark=gpu if self.cudnn_benchmark is None else self.cudnn_benchmark,
            sdpa_backend=self.sdpa_backend,
            compile=self.compile,
        )

    def attention(self) -> contextlib.AbstractContextManager:
        """The context that selects the SDPA backend (a null context for PyTorch's choice)."""
        if self.sdpa_backend is None:
            return contextlib.nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = {
            "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "cudnn": SDPBackend.CUDNN_ATTENTION,
            "math": SDPBackend.MATH,
        }[self.sdpa_backend]
        # the math kernel stays allowed, so a shape the chosen kernel refuses still runs
        return sdpa_kernel([backend, SDPBackend.MATH])


class EagerFallback:
    """`compiled(*args)`, or `eager(*args)` for good once compiling or running the compiled code fails."""

    def __init__(self, eager, name: str) -> None:
        self.eager, self.name = eager, name
        self.compiled = torch.compile(eager)
        self.failed = False

    def __call__(self, *args, **kwargs):
        if not self.failed:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - any compiler failure means eager
                self.failed = True
                logger.warning(
                    "torch.compile of %s failed (%s: %s); running it eagerly", self.name, type(error).__name__, error
                )
        return self.eager(*args, **kwargs)


def apply_speed_settings(model, settings: SpeedSettings, device: torch.device) -> SpeedSettings:
    """Apply the resolved switches to `model` (an AnyToBokeh on `device`); returns them."""
    from any2bokeh.models.phase_upsample import set_phase_upsampling

    settings = settings.resolved(device)
    set_phase_upsampling(model.vae, settings.phase_upsample)
    if settings.channels_last:
        # the 2-D convs' weights (Module.to(memory_format=) refuses the temporal convs' 5-D ones)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.weight.data = module.weight.data.to(memory_format=torch.channels_last)
    if settings.cudnn_benchmark and device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if settings.compile:
        # instance attributes shadow the methods; the modules and their parameter names are untouched
        model.unet.forward = EagerFallback(model.unet.forward, "the UNet")
        model.vae.encode = EagerFallback(model.vae.encode, "the VAE encoder")
        model.vae.decode = EagerFallback(model.vae.decode, "the VAE decoder")
    return settings
