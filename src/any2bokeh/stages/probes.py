"""Does a model use its conditioning? Latent errors with one conditioning signal altered at a time.

Each probe predicts the bokeh latents of held-out clips with the true inputs except one signal, and scores
the MSE against the VAE latents of the ground truth (stage 1's objective). A model that learned from a
signal gets worse when that signal is wrong; one that ignores it does not change.

- `true`: the inputs as they are.
- `identity`: no model, the all-in-focus latents themselves (what copying the input scores).
- `wrong_focus`: d_f replaced by 1 - d_f.
- `k_half`, `k_double`: K x 0.5 and K x 2.
- `one_region`: every pixel in MPI region 0, so every condition key is open at every level (V_D kept).
- `no_condition`: the MPI condition latents (V_A) zeroed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from any2bokeh.metrics import functional
from any2bokeh.stages.base import to_unit_range
from any2bokeh.stages.param_groups import gate_values

PROBES = ("true", "identity", "wrong_focus", "k_half", "k_double", "one_region", "no_condition")


def _variants(net, batch: Mapping[str, Tensor], aif_latents: Tensor) -> dict[str, dict]:
    """The UNet inputs of every model probe for one batch."""
    args = batch["aif"], batch["disparity"]
    base = net.unet_inputs(*args, batch["disp_focus"], batch["k"], aif_latents=aif_latents)
    return {
        "true": base,
        "wrong_focus": net.unet_inputs(*args, 1 - batch["disp_focus"], batch["k"], aif_latents=aif_latents),
        "k_half": {**base, "k": base["k"] * 0.5},
        "k_double": {**base, "k": base["k"] * 2.0},
        "one_region": {**base, "mpi_regions": torch.zeros_like(base["mpi_regions"])},
        "no_condition": {**base, "cond_latents": torch.zeros_like(base["cond_latents"])},
    }


@torch.no_grad()
def conditioning_probes(net, batches: Iterable[Mapping[str, Tensor]]) -> dict[str, float]:
    """Mean latent MSE of each probe in `PROBES` over the batches (rendered ones: `aif`, `bokeh`, ...).

    Args:
        net: an `AnyToBokeh`.
        batches: data batches whose ground truth is rendered (after `on_after_batch_transfer`).
    """
    totals = dict.fromkeys(PROBES, 0.0)
    clips = 0
    for batch in batches:
        target = net.encode(batch["bokeh"]).float()
        aif_latents = net.encode(batch["aif"])
        size = len(target)
        totals["identity"] += F.mse_loss(aif_latents.float(), target).item() * size
        for name, inputs in _variants(net, batch, aif_latents).items():
            totals[name] += F.mse_loss(net.unet(**inputs).float(), target).item() * size
        clips += size
    if clips == 0:
        raise ValueError("conditioning_probes: no batches")
    return {name: total / clips for name, total in totals.items()}


@torch.no_grad()
def ceilings(
    net, batches: Iterable[Mapping[str, Tensor]], altered: Mapping[str, Iterable[Mapping[str, Tensor]]]
) -> dict[str, float]:
    """The rise of the model's latent MSE (as a fraction) that a perfect reader of a signal would show, per probe.

    `altered` maps a probe name (`wrong_focus`, `k_half`, ...) to the same clips with the ground truth rendered as
    that probe alters the signal (`rendered_batches(flip_focus=True)`, `rendered_batches(k_scale=0.5)`). A model
    that followed the signal exactly, keeping its other errors, would move its prediction by the change of the
    ground truth's latents; the ratio of that prediction's MSE to the model's own, minus 1, is what the probe of
    `conditioning_probes` can reach at most. Near 0, the probe cannot see the signal at this scale. The model runs
    once per batch for all the probes.
    """
    model = 0.0
    moved = dict.fromkeys(altered, 0.0)
    for batch, *others in zip(batches, *altered.values(), strict=True):
        target = net.encode(batch["bokeh"]).float()
        error = net.predict_latents(batch["aif"], batch["disparity"], batch["disp_focus"], batch["k"]).float() - target
        model += error.square().mean().item() * len(target)
        for name, other in zip(altered, others):
            shift = net.encode(other["bokeh"]).float() - target
            moved[name] += (error + shift).square().mean().item() * len(target)
    if model == 0:
        raise ValueError("ceilings: no batches, or a model without error")
    return {name: total / model - 1 for name, total in moved.items()}


@torch.no_grad()
def pixel_scores(net, batches: Iterable[Mapping[str, Tensor]]) -> dict[str, float]:
    """PSNR and SSIM of the model's frames and of the all-in-focus input, both against the ground truth."""
    totals = {"psnr": 0.0, "ssim": 0.0, "psnr_input": 0.0, "ssim_input": 0.0}
    clips = 0
    for batch in batches:
        frames = net(batch["aif"], batch["disparity"], batch["disp_focus"], batch["k"]).frames
        pred, aif, gt = (to_unit_range(x) for x in (frames, batch["aif"], batch["bokeh"]))
        size = len(gt)
        totals["psnr"] += functional.psnr(pred, gt).item() * size
        totals["ssim"] += functional.ssim(pred, gt).item() * size
        totals["psnr_input"] += functional.psnr(aif, gt).item() * size
        totals["ssim_input"] += functional.ssim(aif, gt).item() * size
        clips += size
    if clips == 0:
        raise ValueError("pixel_scores: no batches")
    return {name: total / clips for name, total in totals.items()}


def gate_strengths(net) -> dict[str, float]:
    """Mean |tanh(gate)| of the MPI blocks' attention and feed-forward gates (as `train/gate_*` logs them)."""
    return {name: values.abs().mean().item() for name, values in gate_values(net).items()}
