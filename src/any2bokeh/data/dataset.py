"""Synthetic bokeh clips, one per index, and the step that renders their ground truth.

The dataset's workers only sample scenes (layers, planes, disparity, focus, K); the ground-truth
bokeh is rendered afterwards by `render_batch`, on whatever device the batch sits on. A
DataModule calls it in `on_after_batch_transfer`, so on a GPU machine the rendering runs on the
GPU; `SyntheticBokehDataset.render_sample(i)` does the same for one clip without a Trainer.

Sample dict from `__getitem__` (a batch adds a leading B), T frames, L = max_objects + 1 layers:
    images        [T, L, 3, H, W] float32 [0, 1]   layers, nearest first
    alphas        [T, L, 1, H, W] float32 [0, 1]
    planes        [T, L, 3]       float32          (a, b, c), raw disparity d = (1 - a x - b y) / c
    aif           [T, 3, H, W]    float32 [0, 1]   all-in-focus frames
    disparity     [T, 1, H, W]    float32 [0, 1]   normalized over the clip (perturbed on the train
                                                   split when a perturbation is set)
    subject_mask  [T, 1, H, W]    float32 [0, 1]   the target's visible alpha
    disp_focus    [T]             float32 (0, 1]   normalized focal disparity
    k             [T]             float32 >= 0     K, pixels per unit of normalized disparity
    disp_focus_raw, k_raw [T]     float32          the same in the planes' units (renderer input)

Rendered dict from `render_batch` (the batches a LightningModule sees), B clips of T frames:
    aif           [B, T, 3, H, W] float32 [-1, 1]
    bokeh         [B, T, 3, H, W] float32 [-1, 1]  render_layers (or raytrace) of the layers
    disparity     [B, T, 1, H, W] float32 [0, 1]
    disp_focus    [B, T]          float32 (0, 1]
    k             [B, T]          float32
    subject_mask  [B, T, 1, H, W] float32 [0, 1]
See `any2bokeh.data.scenes` for how raw and normalized disparity relate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch.utils.data import Dataset

from any2bokeh.data.scenes import SceneConfig, sample_scene
from any2bokeh.data.seeding import keyed_generator

SPLITS = ("train", "val", "test")
RENDERERS = ("render_layers", "raytrace")
LAYER_KEYS = ("images", "alphas", "planes", "disp_focus_raw", "k_raw")
BATCH_KEYS = ("aif", "bokeh", "disparity", "disp_focus", "k", "subject_mask")


class ConcatSource:
    """Several foreground (or background) sources seen as one; indices run through them in order."""

    def __init__(self, sources: Sequence):
        self.sources = list(sources)
        if not self.sources:
            raise ValueError("ConcatSource needs at least one source")
        self.offsets = [0]
        for source in self.sources:
            self.offsets.append(self.offsets[-1] + len(source))

    def __len__(self) -> int:
        return self.offsets[-1]

    def _locate(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        i = max(j for j in range(len(self.sources)) if self.offsets[j] <= index)
        return self.sources[i], index - self.offsets[i]

    def num_frames(self, index: int) -> int:
        source, local = self._locate(index)
        return source.num_frames(local)

    def load(self, index: int, *args):
        source, local = self._locate(index)
        return source.load(local, *args)


def as_source(source):
    """A source or a list of sources -> one source. Configs are built by the caller (training's
    recursive `hydra.utils.instantiate`), so the data layer never calls Hydra."""
    if isinstance(source, Mapping) and "_target_" in source:
        raise TypeError(
            f"got the unbuilt config of {source['_target_']}; build it first, e.g. hydra.utils.instantiate(config)"
        )
    if isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        parts = [as_source(s) for s in source]
        return parts[0] if len(parts) == 1 else ConcatSource(parts)
    if not hasattr(source, "load") or not hasattr(source, "__len__"):
        raise TypeError(f"not a foreground/background source: {source!r}")
    if len(source) == 0:
        raise ValueError(f"source {source!r} is empty")
    return source


def as_scene_config(scene: SceneConfig | Mapping | None) -> SceneConfig:
    if scene is None:
        return SceneConfig()
    if isinstance(scene, SceneConfig):
        return scene
    if isinstance(scene, Mapping):
        options = {k: v for k, v in dict(scene).items() if k not in ("_target_", "_convert_")}
        return SceneConfig(**options)
    raise TypeError(f"scene must be a SceneConfig or a mapping of its fields, got {type(scene).__name__}")


def _resolve_renderer(renderer: str):
    if renderer not in RENDERERS:
        raise ValueError(f"unknown renderer {renderer!r}; choose one of {RENDERERS}")
    if renderer == "raytrace":
        from any2bokeh.optics.raytrace import raytrace

        return raytrace
    from any2bokeh.optics.layers import render_layers

    return render_layers


@torch.no_grad()
def render_batch(
    batch: Mapping[str, torch.Tensor],
    renderer: str = "render_layers",
    samples_per_side: int = 101,
    chunk_frames: int = 8,
) -> dict[str, torch.Tensor]:
    """Render the ground-truth bokeh of a batch of sampled scenes, on the batch's device.

    batch: a collated sample dict (module docstring) with leading [B, T]. Returns the rendered
    dict (module docstring); the layers are dropped. Frames go to the renderer `chunk_frames`
    at a time, which bounds its memory.
    """
    render = _resolve_renderer(renderer)
    images, alphas, planes = batch["images"], batch["alphas"], batch["planes"]
    B, T = images.shape[:2]
    # [B, T, L, C, H, W] -> [B * T, L, C, H, W]: each frame is one renderer item.
    images, alphas, planes = images.flatten(0, 1), alphas.flatten(0, 1), planes.flatten(0, 1)
    k_raw, focus_raw = batch["k_raw"].flatten(), batch["disp_focus_raw"].flatten()
    chunks = []
    for start in range(0, B * T, chunk_frames):
        part = slice(start, start + chunk_frames)
        chunks.append(
            render(
                images[part],
                alphas[part],
                planes[part],
                k_raw[part],
                focus_raw[part],
                samples_per_side=samples_per_side,
            )
        )
    # [B * T, 3, H, W] -> [B, T, 3, H, W]
    bokeh = torch.cat(chunks).unflatten(0, (B, T)).clamp(0, 1)
    return {
        "aif": batch["aif"] * 2 - 1,
        "bokeh": bokeh * 2 - 1,
        "disparity": batch["disparity"],
        "disp_focus": batch["disp_focus"],
        "k": batch["k"],
        "subject_mask": batch["subject_mask"],
    }


class SyntheticBokehDataset(Dataset):
    """`size` synthetic clips of one split; clip i is a pure function of (seed, split, i).

    foregrounds, backgrounds: sources (any2bokeh.data.assets) or lists of them.
    scene: SceneConfig (or a mapping of its fields); perturbation: called as
    perturbation(disparity [T,1,H,W], generator, subject_mask=...) on the train split only.
    """

    def __init__(
        self,
        foregrounds,
        backgrounds,
        *,
        split: str = "train",
        size: int = 1000,
        num_frames: int = 8,
        height: int = 64,
        width: int = 64,
        seed: int = 0,
        scene: SceneConfig | Mapping | None = None,
        perturbation=None,
        renderer: str = "render_layers",
        samples_per_side: int = 101,
    ):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        if renderer not in RENDERERS:
            raise ValueError(f"unknown renderer {renderer!r}; choose one of {RENDERERS}")
        self.foregrounds = as_source(foregrounds)
        self.backgrounds = as_source(backgrounds)
        self.split, self.size, self.seed = split, int(size), int(seed)
        self.num_frames, self.height, self.width = int(num_frames), int(height), int(width)
        self.scene = as_scene_config(scene)
        if self.scene.tilt > 0 and renderer == "render_layers":
            raise ValueError(
                f"tilted planes (tilt={self.scene.tilt}) need renderer='raytrace'; render_layers is fronto-parallel only"
            )
        self.perturbation = perturbation
        self.renderer, self.samples_per_side = renderer, int(samples_per_side)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for the {self.split} split of {self.size} clips")
        generator = keyed_generator(self.seed, self.split, index)
        scene = sample_scene(
            self.foregrounds,
            self.backgrounds,
            generator,
            num_frames=self.num_frames,
            height=self.height,
            width=self.width,
            config=self.scene,
        )
        sample = {
            name: getattr(scene, name) for name in (*LAYER_KEYS, "aif", "disparity", "subject_mask", "disp_focus", "k")
        }
        if self.split == "train" and self.perturbation is not None:
            sample["disparity"] = self.perturbation(sample["disparity"], generator, subject_mask=sample["subject_mask"])
        return sample

    def render_sample(
        self, index: int, device: str | torch.device | None = None, chunk_frames: int = 8
    ) -> dict[str, torch.Tensor]:
        """Clip `index` fully rendered (the rendered dict without the batch axis), no Trainer needed."""
        sample = self[index]
        batch = {name: value[None].to(device) if device is not None else value[None] for name, value in sample.items()}
        rendered = render_batch(batch, self.renderer, self.samples_per_side, chunk_frames)
        return {name: value[0] for name, value in rendered.items()}
