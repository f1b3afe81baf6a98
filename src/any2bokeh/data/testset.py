"""The fixed synthetic test set: exported to disk once, loaded back as a Dataset.

The paper's set is 200 videos of 25 frames at 1024x576 with K in {4, 8, 16, 32}:

    python -m any2bokeh.data.testset export --out data/testset --num-videos 200 --num-frames 25 \
        --height 576 --width 1024

Layout under the output folder:

    testset.json                 the export's settings and its list of videos
    video_0000/aif/00000.png     all-in-focus frame, 8-bit RGB
    video_0000/bokeh/00000.png   ground-truth bokeh, 8-bit RGB
    video_0000/disparity/00000.png  normalized disparity (over the clip), 16-bit grey: d * 65535
    video_0000/mask/00000.png    subject mask, 8-bit grey
    video_0000/meta.json         per-frame disp_focus and k, exact; the settings it was drawn with

Writes are atomic: each video is written into a hidden temporary folder and renamed into place
when complete, and testset.json is replaced in one rename at the end. An interrupted export
leaves only complete videos, and running the command again finishes the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from any2bokeh.data.dataset import BATCH_KEYS, SyntheticBokehDataset, as_scene_config
from any2bokeh.data.scenes import SceneConfig

INDEX_FILE = "testset.json"
FOLDERS = {"aif": "aif", "bokeh": "bokeh", "disparity": "disparity", "subject_mask": "mask"}
# The test set's K: mild to strong blur, wider than training's 12..28 on both sides, so the
# evaluation also shows how the model extrapolates; d_f follows the subject.
TEST_K_VALUES = (4.0, 8.0, 16.0, 32.0)


def evaluation_scene_config(**overrides) -> SceneConfig:
    """The test set's scenes: the training scenes with K in {4, 8, 16, 32}."""
    return SceneConfig(**{"k_values": TEST_K_VALUES, **overrides})


def _default_sources(height: int, width: int, seed: int):
    from any2bokeh.data.procedural import ProceduralBackgrounds, ProceduralForegrounds

    # Other procedural seeds than training (seed 0), so test objects are unseen.
    return (
        ProceduralForegrounds(num_clips=1000, size=height, num_frames=100, seed=1000 + seed),
        ProceduralBackgrounds(num_images=1000, size=(height, width), seed=1000 + seed),
    )


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """[C, H, W] in [0, 1] -> [H, W, C] (or [H, W] for C = 1) uint8."""
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return array[..., 0] if array.shape[-1] == 1 else array


def _write_video(folder: Path, sample: dict[str, torch.Tensor], settings: dict) -> None:
    for key, name in FOLDERS.items():
        (folder / name).mkdir(parents=True)
    for t in range(sample["aif"].shape[0]):
        Image.fromarray(_to_uint8((sample["aif"][t] + 1) / 2)).save(folder / "aif" / f"{t:05d}.png")
        Image.fromarray(_to_uint8((sample["bokeh"][t] + 1) / 2)).save(folder / "bokeh" / f"{t:05d}.png")
        Image.fromarray(_to_uint8(sample["subject_mask"][t])).save(folder / "mask" / f"{t:05d}.png")
        disparity = (sample["disparity"][t, 0].clamp(0, 1) * 65535).round().cpu().numpy().astype(np.uint16)
        Image.fromarray(disparity).save(folder / "disparity" / f"{t:05d}.png")
    meta = {"disp_focus": sample["disp_focus"].tolist(), "k": sample["k"].tolist(), "settings": settings}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def _check_kept_video(meta_path: Path, settings: dict) -> None:
    """A video kept from an earlier run must have been drawn with the same settings."""
    kept = json.loads(meta_path.read_text()).get("settings") or {}
    differ = sorted(name for name in settings.keys() | kept.keys() if kept.get(name) != settings.get(name))
    if differ:
        raise ValueError(
            f"{meta_path.parent} was exported with other settings ({', '.join(differ)}); "
            f"export into a new folder or delete the old test set"
        )


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _write_json_atomic(path: Path, content: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(content, f, indent=1)
    # mkstemp makes the file private (0600); give it the permissions of any other new file.
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def export_testset(
    out_dir: str | Path,
    *,
    num_videos: int = 200,
    num_frames: int = 25,
    height: int = 576,
    width: int = 1024,
    seed: int = 0,
    foregrounds=None,
    backgrounds=None,
    scene: SceneConfig | dict | None = None,
    renderer: str = "render_layers",
    samples_per_side: int = 101,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> Path:
    """Render and write the test set to out_dir; videos already complete there are kept.

    A kept video must have been exported with the same settings (sizes, seed, renderer, scene),
    else this raises a ValueError; the sources are not compared.

    foregrounds, backgrounds: sources (default: procedural ones with seeds unseen in training).
    scene: default `evaluation_scene_config()` (K in {4, 8, 16, 32}). Video i is clip i of the
    "test" split with this seed, so the export is reproducible. Returns out_dir.
    """
    if num_videos < 1 or num_frames < 1:
        raise ValueError(f"need num_videos >= 1 and num_frames >= 1, got {num_videos} and {num_frames}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if foregrounds is None or backgrounds is None:
        default_fg, default_bg = _default_sources(height, width, seed)
        foregrounds = default_fg if foregrounds is None else foregrounds
        backgrounds = default_bg if backgrounds is None else backgrounds
    scene = as_scene_config(scene) if scene is not None else evaluation_scene_config()
    dataset = SyntheticBokehDataset(
        foregrounds,
        backgrounds,
        split="test",
        size=num_videos,
        num_frames=num_frames,
        height=height,
        width=width,
        seed=seed,
        scene=scene,
        renderer=renderer,
        samples_per_side=samples_per_side,
    )
    names = [f"video_{i:04d}" for i in range(num_videos)]
    # Everything a video depends on besides its sources, as JSON reads it back.
    clip_settings = json.loads(
        json.dumps(
            {
                "num_frames": num_frames,
                "height": height,
                "width": width,
                "seed": seed,
                "renderer": renderer,
                "samples_per_side": samples_per_side,
                **{f"scene.{k}": v for k, v in asdict(scene).items()},
            }
        )
    )
    # Leftovers of an interrupted run: never renamed into place, so safe to drop.
    for stale in out.glob(".tmp_video_*"):
        shutil.rmtree(stale, ignore_errors=True)
    for i, name in enumerate(names):
        if (out / name / "meta.json").is_file():
            _check_kept_video(out / name / "meta.json", clip_settings)
            continue
        sample = dataset.render_sample(i, device=device)
        tmp = Path(tempfile.mkdtemp(dir=out, prefix=f".tmp_{name}_"))
        # mkdtemp makes the folder private (0700); give it the permissions of any other new folder.
        os.chmod(tmp, 0o777 & ~_umask())
        try:
            _write_video(tmp, sample, clip_settings)
            os.replace(tmp, out / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if progress:
            print(f"{i + 1}/{num_videos} {out / name}", flush=True)
    settings = {
        "num_videos": num_videos,
        "num_frames": num_frames,
        "height": height,
        "width": width,
        "seed": seed,
        "renderer": renderer,
        "samples_per_side": samples_per_side,
        "k_values": list(scene.k_values),
        "k_range": scene.k_range,
        "focus_modes": dict(scene.focus_modes),
        "videos": names,
    }
    _write_json_atomic(out / INDEX_FILE, settings)
    return out


def _read_png(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"test-set frame missing: {path}")
    with Image.open(path) as image:
        return np.array(image)


class TestSetDataset(Dataset):
    """A test set written by `export_testset`; item i is video i as the DataModule's batches are
    (without the batch axis): aif, bokeh [T,3,H,W] in [-1,1]; disparity, subject_mask [T,1,H,W]
    in [0,1]; disp_focus, k [T]. Values are those of the PNGs (8-bit images and masks, 16-bit
    disparity); disp_focus and k are exact."""

    __test__ = False  # not a pytest class

    def __init__(self, root: str | Path):
        self.root = Path(root)
        index = self.root / INDEX_FILE
        if not index.is_file():
            raise FileNotFoundError(
                f"no test set at {self.root}: {index} is missing (run `python -m any2bokeh.data.testset export`)"
            )
        self.settings = json.loads(index.read_text())
        self.videos = list(self.settings["videos"])

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        folder = self.root / self.videos[index]
        meta_path = folder / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"test-set video incomplete: {meta_path} is missing")
        meta = json.loads(meta_path.read_text())
        frames = range(len(meta["k"]))

        def stack(name: str, scale: float) -> torch.Tensor:
            arrays = [_read_png(folder / name / f"{t:05d}.png").astype(np.float32) / scale for t in frames]
            tensor = torch.from_numpy(np.stack(arrays))
            # [T, H, W, C] -> [T, C, H, W]; grey [T, H, W] -> [T, 1, H, W]
            return tensor.permute(0, 3, 1, 2) if tensor.ndim == 4 else tensor[:, None]

        sample = {
            "aif": stack("aif", 255.0) * 2 - 1,
            "bokeh": stack("bokeh", 255.0) * 2 - 1,
            "disparity": stack("disparity", 65535.0),
            "disp_focus": torch.tensor(meta["disp_focus"], dtype=torch.float32),
            "k": torch.tensor(meta["k"], dtype=torch.float32),
            "subject_mask": stack("mask", 255.0),
        }
        return {name: sample[name] for name in BATCH_KEYS}


def _sources_from_config(path: str, data_dir: str | None, height: int, width: int):
    """Foreground and background sources of a data config (conf/data/NAME.yaml), composed as training
    composes it. Only the command line calls this: the data classes themselves receive built sources."""
    from hydra.utils import instantiate

    from any2bokeh.utils.hydra import compose_config

    file = Path(path).resolve()
    if not file.is_file():
        raise FileNotFoundError(f"data config not found: {file}")
    if file.parent.name != "data":
        raise ValueError(
            f"--data-config must be a file of a config folder's data group (conf/data/NAME.yaml), got {path}"
        )
    overrides = [
        f"+data={file.stem}",
        f"+paths.data_dir={data_dir or 'data'}",
        f"data.height={height}",
        f"data.width={width}",
    ]
    data = compose_config(file.parent.parent, None, overrides).data
    return instantiate(data.foregrounds), instantiate(data.backgrounds)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m any2bokeh.data.testset", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="render the test set and write it to --out")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--num-videos", type=int, default=200)
    export.add_argument("--num-frames", type=int, default=25)
    export.add_argument("--height", type=int, default=576)
    export.add_argument("--width", type=int, default=1024)
    export.add_argument("--seed", type=int, default=0)
    export.add_argument("--k-values", type=float, nargs="+", default=list(TEST_K_VALUES))
    export.add_argument(
        "--data-config",
        default=None,
        help="take foregrounds/backgrounds from this data config (e.g. conf/data/matting.yaml); "
        "default: procedural sources",
    )
    export.add_argument("--data-dir", default=None, help="${paths.data_dir} for --data-config")
    export.add_argument("--renderer", choices=("render_layers", "raytrace"), default="render_layers")
    export.add_argument("--samples-per-side", type=int, default=101)
    export.add_argument("--device", default=None, help="render on this device, e.g. cuda")
    args = parser.parse_args(argv)
    foregrounds = backgrounds = None
    if args.data_config:
        foregrounds, backgrounds = _sources_from_config(args.data_config, args.data_dir, args.height, args.width)
    out = export_testset(
        args.out,
        num_videos=args.num_videos,
        num_frames=args.num_frames,
        height=args.height,
        width=args.width,
        seed=args.seed,
        foregrounds=foregrounds,
        backgrounds=backgrounds,
        scene=evaluation_scene_config(k_values=tuple(args.k_values)),
        renderer=args.renderer,
        samples_per_side=args.samples_per_side,
        device=args.device,
        progress=True,
    )
    print(f"test set: {out}")


if __name__ == "__main__":
    main()
