"""Validation sample videos: all-in-focus | disparity with MPI regions | prediction | ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from any2bokeh.io import write_mp4

# One colour per MPI region, nearest the focal plane first: green (in focus) to red (far from it).
REGION_COLOURS = torch.tensor(
    [[0.20, 0.80, 0.30], [0.95, 0.85, 0.20], [0.95, 0.50, 0.15], [0.85, 0.15, 0.15], [0.55, 0.15, 0.70]]
)


def disparity_panel(disparity: Tensor, disp_focus: Tensor, n_planes: int = 4, tint: float = 0.45) -> Tensor:
    """Grey disparity tinted by its focal-plane-adapted MPI region (eq. 2-3).

    Args:
        disparity: [T, 1, H, W] in [0, 1].
        disp_focus: [T].
    Returns:
        [T, 3, H, W] in [0, 1].
    """
    from any2bokeh.models import mpi_regions

    if n_planes > len(REGION_COLOURS):
        raise ValueError(f"disparity_panel has {len(REGION_COLOURS)} region colours, got n_planes={n_planes}")
    disparity = disparity.float().clamp(0, 1)
    regions = mpi_regions(disparity[:, 0], disp_focus.float(), n_planes=n_planes)  # [T, H, W]
    # colours: [T, H, W, 3] -> [T, 3, H, W]
    colours = REGION_COLOURS.to(disparity.device)[regions].permute(0, 3, 1, 2)
    return (1 - tint) * disparity.expand(-1, 3, -1, -1) + tint * colours


def sample_panel(batch: dict[str, Tensor], prediction: Tensor, index: int, n_planes: int = 4) -> np.ndarray:
    """Side-by-side video of sample `index`: uint8 [T, H, 4 * W, 3]."""
    unit = lambda frames: ((frames.detach().float() + 1) / 2).clamp(0, 1)  # noqa: E731
    panels = [
        unit(batch["aif"][index]),
        disparity_panel(batch["disparity"][index], batch["disp_focus"][index], n_planes),
        unit(prediction[index]),
        unit(batch["bokeh"][index]),
    ]
    # 4 x [T, 3, H, W] -> [T, 3, H, 4W] -> [T, H, 4W, 3]
    video = torch.cat([panel.cpu() for panel in panels], dim=-1).permute(0, 2, 3, 1)
    return (video * 255).round().to(torch.uint8).numpy()


class VideoLogger(Callback):
    """After each validation, writes the first `num_videos` validation clips as mp4 panels
    (all-in-focus | disparity with MPI regions | prediction | ground truth) under `dirpath`, and logs
    them as videos to every wandb logger of the run.

    Args:
        num_videos: clips per validation.
        fps: frame rate of the written videos.
        dirpath: where the mp4s go; default `<trainer.default_root_dir>/videos`.
        n_planes: MPI regions drawn on the disparity (the model's N).
        key: the name the videos are logged under.
    """

    def __init__(
        self, num_videos: int = 2, fps: int = 4, dirpath: str | None = None, n_planes: int = 4, key: str = "val/samples"
    ) -> None:
        if num_videos < 0 or fps < 1:
            raise ValueError(f"VideoLogger needs num_videos >= 0 and fps >= 1, got {num_videos}, {fps}")
        self.num_videos = num_videos
        self.fps = fps
        self.dirpath = dirpath
        self.n_planes = n_planes
        self.key = key
        self._panels: list[np.ndarray] = []

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._panels = []

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or len(self._panels) >= self.num_videos:
            return
        if not isinstance(outputs, dict) or outputs.get("prediction") is None:
            raise ValueError("VideoLogger needs validation_step to return {'prediction': [B, T, 3, H, W]}")
        for index in range(min(len(batch["aif"]), self.num_videos - len(self._panels))):
            self._panels.append(sample_panel(batch, outputs["prediction"], index, self.n_planes))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not self._panels:
            return
        folder = Path(self.dirpath or Path(trainer.default_root_dir) / "videos")
        step = trainer.global_step
        paths = [
            str(write_mp4(folder / f"step{step:07d}_{i}.mp4", panel, self.fps)) for i, panel in enumerate(self._panels)
        ]
        self._panels = []
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                captions = ["all-in-focus | disparity + MPI regions | prediction | ground truth"] * len(paths)
                logger.log_video(self.key, paths, step=step, caption=captions, format=["mp4"] * len(paths))
