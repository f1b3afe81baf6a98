"""The frame shared by the three training stages (§3.4): parameter selection, one model_step, metrics."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from any2bokeh.data.dataset import BATCH_KEYS
from any2bokeh.metrics import missing_test_metrics_notice, training_metrics
from any2bokeh.models.any_to_bokeh import EncodedFrames
from any2bokeh.models.conditioning import vd_image
from any2bokeh.models.inputs import normalize_inputs
from any2bokeh.models.serialization import CHECKPOINT_CONFIG_KEY
from any2bokeh.stages.frozen_cast import frozen_roots, half_dtype, hold_in_half, restore, restore_in_checkpoint
from any2bokeh.stages.param_groups import (
    check_group_settings,
    check_optimizer_keywords,
    check_saved_groups,
    gate_values,
    parameter_groups,
)

# The data layer defines the batch; the model needs all of it but the subject mask, which serves evaluation.
REQUIRED_KEYS = tuple(key for key in BATCH_KEYS if key != "subject_mask")


@dataclass
class StepOutput:
    """What `BokehModule.model_step` returns.

    loss: scalar tensor that is optimised.
    terms: named parts of the loss, logged as `<split>/<name>` (always holds "loss").
    prediction: [B, T, 3, H, W] predicted bokeh frames in [-1, 1], when decoded; else None.
    """

    loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)
    prediction: Tensor | None = None


def to_unit_range(frames: Tensor) -> Tensor:
    """[B, T, 3, H, W] in [-1, 1] -> [B, T, 3, H, W] float32 in [0, 1], the videos the metrics compare."""
    return ((frames.detach().float() + 1) / 2).clamp(0, 1)


class BokehModule(LightningModule):
    """Base LightningModule of the training stages.

    A stage names the parameters it trains (`trainable_parameters`); everything else in `net` is frozen
    and kept in eval mode. `model_step` is shared by training, validation and test. The default one is
    the objective of stages 1 and 2: the MSE between the predicted latents and the VAE latents of the
    ground-truth bokeh; stage 3 replaces it.

    Args:
        net: an `AnyToBokeh` (UNet `.unet`, VAE with skips `.vae`, optional `.image_encoder`).
        optimizer: a partial optimizer (Hydra `_partial_: true`), finished here with the trainable
            parameters in groups (`any2bokeh.stages.param_groups`): "pretrained", "new" and "gates".
        scheduler: an optional partial learning-rate scheduler, finished with the optimizer; stepped
            every optimisation step. None keeps the rate constant, as the paper does.
        metric_weights: weight files of the network-backed test metrics (`any2bokeh.metrics.training_metrics`);
            with `lpips_backbone`, the test reports RM and LPIPS beside PSNR and SSIM.
        param_groups: optimizer keywords per group, e.g. {"gates": {"lr": 1e-4, "weight_decay": 0.0}}, that
            override the optimizer's own for that group; a missing group or keyword keeps the optimizer's.

    Training logs `train/gate_attn` and `train/gate_ff`, the mean |tanh(gate)| of the MPI blocks; with a
    wandb logger also the per-block values as histograms every `log_every_n_steps`.

    Gradient checkpointing is the network's own setting (`model.gradient_checkpointing`): it recomputes the
    blocks that run with gradients, so only the trained part pays for it.
    """

    #: Stages 2 and 3 refine an already trained model; starting them from a bare SVD is a mistake.
    needs_trained_start: ClassVar[bool] = False
    #: under a mixed precision, hold the frozen VAE and CLIP in its half dtype during a fit (`frozen_cast`)
    cast_frozen: bool = True

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        metric_weights: dict[str, str | None] | None = None,
        param_groups: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"], logger=False)
        if not callable(optimizer):
            raise TypeError(
                f"optimizer must be a partial optimizer (Hydra `_partial_: true`), got {type(optimizer).__name__}"
            )
        self.group_settings = check_group_settings(param_groups)
        self._histogram_step = -1
        self.net = net
        # the frozen encoders' float32 weights while a mixed-precision fit holds them in half (`frozen_cast`)
        self._kept_float32: dict[str, Tensor] = {}
        # per-frame PSNR and SSIM averaged over frames, as the paper's evaluation does; more in the test split
        self.metrics = training_metrics(metric_weights)
        self._select_trainable()
        self.train(self.training)

    # ---------------------------------------------------------------- parameter selection
    def trainable_parameters(self) -> Iterable[Tensor]:
        """The parameters of `net` this stage trains."""
        raise NotImplementedError

    def _select_trainable(self) -> None:
        trainable = {id(p) for p in self.trainable_parameters()}
        if not trainable:
            raise ValueError(f"{type(self).__name__} selects no trainable parameters in {type(self.net).__name__}")
        for parameter in self.net.parameters():
            parameter.requires_grad_(id(parameter) in trainable)

    def trainable_parameter_names(self) -> list[str]:
        """Names (relative to `net`) of the parameters this stage trains."""
        return [name for name, p in self.net.named_parameters() if p.requires_grad]

    def on_fit_start(self) -> None:
        # Lightning does not call train() when fitting starts; this applies the frozen parts' eval mode
        self.train()
        # the frozen VAE and CLIP in the run's half precision, cast once (`frozen_cast`)
        half = half_dtype(self.trainer.precision) if self.cast_frozen else None
        self._kept_float32 = hold_in_half(self.net, half)
        # the size the network learns at, saved with it: the model renderer's default working size
        datamodule = getattr(self.trainer, "datamodule", None)
        options = getattr(self.net, "options", None)
        if options is not None and hasattr(datamodule, "height") and hasattr(datamodule, "width"):
            options.training_size = [int(datamodule.height), int(datamodule.width)]

    def train(self, mode: bool = True) -> BokehModule:
        # Frozen parts stay in eval mode: no dropout noise, and no running statistics move.
        super().train(mode)
        if mode:
            for module in frozen_roots(self.net):
                module.eval()
        return self

    # ---------------------------------------------------------------- steps
    def model_step(self, batch: dict[str, Tensor], decode: bool = False) -> StepOutput:
        """Latent objective of stages 1 and 2.

        Args:
            batch: the DataModule's dict: aif, bokeh [B, T, 3, H, W] in [-1, 1], disparity [B, T, 1, H, W]
                in [0, 1], disp_focus and k [B, T].
            decode: also decode the predicted latents to frames (validation, test).
        """
        check_batch(batch)
        # the encoder skips (full-resolution features) are only needed to decode the prediction
        target, aif, vd_latents = self.encode_frozen(batch, with_target=True, keep_skips=decode)
        latents = self.predict_latents(batch, aif.latents, vd_latents)
        loss = F.mse_loss(latents.float(), target.float())
        prediction = None
        if decode:
            with torch.no_grad():
                prediction = self.net.decode(latents, skips=aif.skips)
        return StepOutput(loss=loss, terms={"loss": loss}, prediction=prediction)

    def encode_frozen(
        self, batch: dict[str, Tensor], with_target: bool, keep_skips: bool
    ) -> tuple[Tensor | None, EncodedFrames, Tensor]:
        """The step's frozen encodes in one call of the VAE encoder: the bokeh target (`with_target`), the
        all-in-focus frames (with their skips when `keep_skips`) and the V_D image.

        Returns (target latents or None, the all-in-focus `EncodedFrames`, V_D latents), each [B, T, 4, h, w].
        """
        net = self.net
        with torch.no_grad():  # the VAE encoder is frozen in every stage
            # shapes only: the UNet's call (`predict_latents`) checks the values, one device sync per step
            disparity, disp_focus, _ = normalize_inputs(
                batch["aif"], batch["disparity"], batch["disp_focus"], batch["k"], net.size_multiple, False
            )
            vd = vd_image(disparity, disp_focus).to(batch["aif"].dtype)
            images = [batch["bokeh"]] if with_target else []
            images += [batch["aif"], vd]
            # [n x [B, T, 3, H, W]] -> [n * B, T, 3, H, W]: one encoder call
            encoded = net.encode_with_skips(torch.cat(images), keep_skips=keep_skips)
            parts = encoded.latents.chunk(len(images))
            index = 1 if with_target else 0
            skips = []
            if keep_skips:
                # skips are [n * B * T, C, H, W]: keep (a copy of) the all-in-focus share only
                frames = batch["aif"].shape[0] * batch["aif"].shape[1]
                skips = [level[index * frames : (index + 1) * frames].clone() for level in encoded.skips]
        aif = EncodedFrames(latents=parts[index], skips=skips)
        return (parts[0] if with_target else None), aif, parts[-1]

    def predict_latents(
        self, batch: dict[str, Tensor], aif_latents: Tensor, vd_latents: Tensor | None = None
    ) -> Tensor:
        """The UNet's bokeh latents [B, T, 4, h, w] for a batch whose all-in-focus frames (and V_D) are encoded."""
        return self.net.predict_latents(
            batch["aif"],
            batch["disparity"],
            batch["disp_focus"],
            batch["k"],
            aif_latents=aif_latents,
            vd_latents=vd_latents,
        )

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        output = self.model_step(batch)
        if not torch.isfinite(output.loss).all():
            raise FloatingPointError(
                f"{type(self).__name__}: the training loss is {output.loss.item()} at global step "
                f"{self.global_step} (batch {batch_idx}); stopping. Lower the learning rate, or train with "
                "precision=32 to find the first non-finite value."
            )
        self._log_terms("train", output, batch)
        self._log_gates()
        return output.loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate("val", batch)

    def on_test_start(self) -> None:
        notice = missing_test_metrics_notice(self.metrics["test"])
        if notice:
            rank_zero_info(notice)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._evaluate("test", batch)

    def _evaluate(self, split: str, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        output = self.model_step(batch, decode=True)
        metrics = self.metrics[split]
        metrics.update(to_unit_range(output.prediction), to_unit_range(batch["bokeh"]))
        self._log_terms(split, output, batch)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=split == "val", batch_size=len(batch["aif"]))
        return {"prediction": output.prediction}

    def _log_terms(self, split: str, output: StepOutput, batch: dict[str, Tensor]) -> None:
        on_step = split == "train"
        for name, value in output.terms.items():
            self.log(
                f"{split}/{name}",
                value.detach(),
                on_step=on_step,
                on_epoch=not on_step,
                prog_bar=name == "loss",
                sync_dist=not on_step,
                batch_size=len(batch["aif"]),
            )

    def _log_gates(self) -> None:
        """The effective strength of the MPI blocks' gates: mean |tanh(gate)| over the blocks."""
        # per gate name: tanh of each block's gate, [num_blocks]
        values = gate_values(self.net)
        for name, tanh in values.items():
            self.log(f"train/{name}", tanh.abs().mean(), on_step=True, on_epoch=False)
        wandb_loggers = [logger for logger in self.loggers if isinstance(logger, WandbLogger)]
        step = self.global_step
        # with gradient accumulation several batches share a step: one histogram per step
        if not values or not wandb_loggers or step % self.trainer.log_every_n_steps or step == self._histogram_step:
            return
        import wandb  # only with a wandb logger, which needs it anyway

        self._histogram_step = step
        histograms = {f"train/{name}_blocks": wandb.Histogram(tanh.cpu().numpy()) for name, tanh in values.items()}
        for logger in wandb_loggers:
            logger.log_metrics(histograms, step=step)

    def on_fit_end(self) -> None:
        restore(self.net, self._kept_float32)
        self._kept_float32 = {}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # how to rebuild the network's architecture; `AnyToBokeh.from_checkpoint` reads it (stage chaining)
        checkpoint[CHECKPOINT_CONFIG_KEY] = self.net.config
        # the frozen encoders' float32 weights, not their half copies of this fit
        restore_in_checkpoint(checkpoint, self._kept_float32)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # resuming a fit (ckpt_path): the saved optimizer must hold this run's groups; testing a checkpoint and
        # plain weight loading (load_from_checkpoint, no trainer) never touch the optimizer state
        fitting = self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
        if fitting and checkpoint.get("optimizer_states"):
            check_saved_groups(checkpoint["optimizer_states"], parameter_groups(self.net, self.group_settings))

    # ---------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        groups = parameter_groups(self.net, self.group_settings)
        parameters = [parameter for group in groups for parameter in group["params"]]
        optimizer = self.hparams.optimizer(params=groups, **fused_option(self.hparams.optimizer, parameters))
        check_optimizer_keywords(optimizer, self.group_settings)
        if self.hparams.scheduler is None:
            return {"optimizer": optimizer}
        scheduler = self.hparams.scheduler(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}


def fused_option(factory: Any, parameters: list[Tensor]) -> dict[str, bool]:
    """{"fused": True} for Adam or AdamW whose config leaves `fused` unset, when every trained parameter is a
    floating-point CUDA tensor (one kernel for the whole update); {} otherwise."""
    func = getattr(factory, "func", factory)
    keywords = getattr(factory, "keywords", {}) or {}
    if func not in (torch.optim.Adam, torch.optim.AdamW) or "fused" in keywords or not parameters:
        return {}
    on_cuda = all(parameter.is_cuda and parameter.is_floating_point() for parameter in parameters)
    return {"fused": True} if on_cuda else {}


def check_batch(batch: dict[str, Tensor]) -> None:
    missing = [key for key in REQUIRED_KEYS if key not in batch]
    if missing:
        raise KeyError(f"the batch lacks {missing}; it has {sorted(batch)}")
