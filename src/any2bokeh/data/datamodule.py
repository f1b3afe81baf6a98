"""The Lightning DataModule of on-the-fly synthetic bokeh pairs.

Batches, as a LightningModule sees them (after `on_after_batch_transfer`), B = batch_size clips
per device of T = num_frames frames:

    aif           [B, T, 3, H, W] float32 [-1, 1]   all-in-focus input frames
    bokeh         [B, T, 3, H, W] float32 [-1, 1]   ground truth, rendered from the layers
    disparity     [B, T, 1, H, W] float32 [0, 1]    normalized over the clip; perturbed on the
                                                    train split when `perturbation` is set
    disp_focus    [B, T]          float32 (0, 1]    focal disparity, same units as `disparity`
    k             [B, T]          float32           blur strength: radius = k·|disparity - disp_focus| px
    subject_mask  [B, T, 1, H, W] float32 [0, 1]    the focused subject's visible alpha

The workers only sample scenes (layers, see `any2bokeh.data.dataset`); the bokeh is rendered
after the batch reaches its device, so on a GPU machine it is rendered on the GPU. A
LightningModule used with this DataModule must not override `on_after_batch_transfer` (Lightning
would then call the module's hook instead of this one).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict

import lightning as L
import torch
from lightning.pytorch.utilities import move_data_to_device
from torch.utils.data import DataLoader

from any2bokeh.data.dataset import (
    SyntheticBokehDataset,
    as_scene_config,
    as_source,
    render_batch,
)
from any2bokeh.data.scenes import SceneConfig


class SyntheticBokehDataModule(L.LightningDataModule):
    """Train/val/test splits of synthetic clips; clip i of a split is a pure function of
    (seed, split, i), whatever the worker, process or machine.

    Args:
        foregrounds: a ForegroundSource or a list of them (concatenated); Hydra builds them from
            the config before they reach the DataModule.
        backgrounds: a BackgroundSource or a list of them.
        num_frames, height, width: T, H, W of every clip.
        batch_size: clips per device (per process under DDP).
        num_workers: DataLoader workers per process.
        train_size, val_size, test_size: clips per split (the train split is resampled from the
            same indices every epoch, in shuffled order).
        seed: the data seed; splits never share a clip.
        perturbation: a DisparityPerturbation (or any callable of the same signature) applied
            to the train split's disparity only; None for clean disparity.
        scene: a SceneConfig or a mapping of its fields (objects, trajectories, focus, K).
        renderer: "render_layers" (fast, default) or "raytrace" (exact; needed for tilted planes).
        samples_per_side: lens lattice of the renderer.
        render_chunk_frames: frames rendered at once, which bounds the renderer's memory.
        pin_memory: pin host memory for the transfer; default: when CUDA is available.
    """

    def __init__(
        self,
        foregrounds,
        backgrounds,
        num_frames: int = 4,
        height: int = 64,
        width: int = 64,
        batch_size: int = 1,
        num_workers: int = 0,
        train_size: int = 1000,
        val_size: int = 8,
        test_size: int = 8,
        seed: int = 0,
        perturbation=None,
        scene: SceneConfig | Mapping | None = None,
        renderer: str = "render_layers",
        samples_per_side: int = 101,
        render_chunk_frames: int = 8,
        pin_memory: bool | None = None,
    ):
        super().__init__()
        if num_frames < 1 or height < 2 or width < 2:
            raise ValueError(f"need num_frames >= 1 and height, width >= 2, got {num_frames}, {height}, {width}")
        if batch_size < 1 or num_workers < 0 or render_chunk_frames < 1:
            raise ValueError(
                f"need batch_size >= 1, num_workers >= 0, render_chunk_frames >= 1, got {batch_size}, "
                f"{num_workers}, {render_chunk_frames}"
            )
        self.save_hyperparameters(ignore=["foregrounds", "backgrounds", "perturbation", "scene"], logger=False)
        self.foregrounds = as_source(foregrounds)
        self.backgrounds = as_source(backgrounds)
        self.perturbation = perturbation
        self.scene = as_scene_config(scene)
        # Plain values only: checkpoints store these and load with torch.load(weights_only=True).
        self.hparams["scene"] = asdict(self.scene)
        self.num_frames, self.height, self.width = int(num_frames), int(height), int(width)
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.sizes = {"train": int(train_size), "val": int(val_size), "test": int(test_size)}
        self.seed = int(seed)
        self.renderer, self.samples_per_side = renderer, int(samples_per_side)
        self.render_chunk_frames = int(render_chunk_frames)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.datasets: dict[str, SyntheticBokehDataset] = {}

    def dataset(self, split: str) -> SyntheticBokehDataset:
        """The split's dataset (built on first use)."""
        if split not in self.datasets:
            self.datasets[split] = SyntheticBokehDataset(
                self.foregrounds,
                self.backgrounds,
                split=split,
                size=self.sizes.get(split, 0),
                num_frames=self.num_frames,
                height=self.height,
                width=self.width,
                seed=self.seed,
                scene=self.scene,
                perturbation=self.perturbation if split == "train" else None,
                renderer=self.renderer,
                samples_per_side=self.samples_per_side,
            )
        return self.datasets[split]

    def setup(self, stage: str | None = None) -> None:
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in splits.get(stage, ("train", "val", "test")):
            self.dataset(split)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def rendered_batches(
        self,
        split: str,
        device: torch.device | str,
        limit: int | None = None,
        k_scale: float = 1.0,
        flip_focus: bool = False,
    ) -> Iterator[dict]:
        """The split's batches in order, outside a Trainer, as a module sees them: on `device`, ground truth rendered.

        limit: stop after this many batches (None: the whole split).
        k_scale: render the ground truth with K times this (the batch's `k` is left as it is): what the bokeh
            would be if a model read K x k_scale.
        flip_focus: render the ground truth focused at 1 - d_f (the batch's `disp_focus` is left as it is): what
            the bokeh would be if a model focused where `1 - disp_focus` says.
        """
        for index, batch in enumerate(self._loader(split, shuffle=False)):
            if index == limit:
                return
            batch = move_data_to_device(batch, device)
            if k_scale != 1.0:
                batch = {**batch, "k_raw": batch["k_raw"] * k_scale}
            if flip_focus:
                batch = opposite_focus(batch)
            yield self.on_after_batch_transfer(batch, 0)

    def on_after_batch_transfer(self, batch, dataloader_idx: int = 0):
        """Render the ground truth where the batch now lives (the GPU on GPU machines)."""
        if isinstance(batch, Mapping) and "images" in batch:
            return render_batch(batch, self.renderer, self.samples_per_side, self.render_chunk_frames)
        return batch


def opposite_focus(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A sampled (unrendered) batch whose renderer focus is at normalized disparity 1 - d_f instead of d_f.

    The clip's normalized and raw disparities are affine: raw = d_min + d * span, and k_raw = k / span. So
    moving d_f to 1 - d_f moves the raw focus by (1 - 2 d_f) * span = (1 - 2 d_f) * k / k_raw. Where K is 0
    nothing is blurred and the focus is kept.
    """
    k, k_raw = batch["k"], batch["k_raw"]
    span = torch.where(k_raw > 0, k / k_raw.clamp(min=1e-12), torch.zeros_like(k))
    return {**batch, "disp_focus_raw": batch["disp_focus_raw"] + (1 - 2 * batch["disp_focus"]) * span}
