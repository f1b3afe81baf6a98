"""The conditioning probes during training: does the model use d_f, K and the MPI regions yet?"""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from any2bokeh.stages.probes import PROBES, conditioning_probes


class ConditioningProbes(Callback):
    """After each validation, score the first `max_batches` validation batches with every probe.

    Logs `probe/mse_true`, `probe/mse_identity`, `probe/true_over_identity` and, for each altered signal,
    `probe/<name>`: its latent MSE over the true one's, minus 1 (0: the model ignores that signal). The
    values are also kept in `history`, one dict per validation, with the global step. Runs on rank 0 only.

    Args:
        max_batches: validation batches scored (the same ones each time).
    """

    def __init__(self, max_batches: int = 8) -> None:
        if max_batches < 1:
            raise ValueError(f"ConditioningProbes: max_batches must be >= 1, got {max_batches}")
        self.max_batches = max_batches
        self.history: list[dict[str, float]] = []

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: Trainer, module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        batches = trainer.datamodule.rendered_batches("val", module.device, limit=self.max_batches)
        mse = conditioning_probes(module.net, batches)
        values = {
            "mse_true": mse["true"],
            "mse_identity": mse["identity"],
            "true_over_identity": mse["true"] / mse["identity"],
            **{name: mse[name] / mse["true"] - 1 for name in PROBES if name not in ("true", "identity")},
        }
        self.history.append({"step": trainer.global_step, **values})
        for logger in trainer.loggers:
            logger.log_metrics({f"probe/{name}": value for name, value in values.items()}, step=trainer.global_step)
