"""Synthesis benchmark: the ground-truth renderers and the DataModule's throughput.

1. ms per frame of ``raytrace`` (101 lens samples per side) and ``render_layers`` at 1024x576 with
   5 layers, and the PSNR between them (``benchmarks/render.py``'s measurement; on a CPU the ray
   tracer is timed on a fraction of the lens and extrapolated, and the PSNR taken on a band of rows).
2. Throughput of SyntheticBokehDataModule: 8-frame training pairs per second, from the DataLoader
   (scene sampling in workers) through ``on_after_batch_transfer`` (ground truth rendered on the
   device), with the procedural sources.

    python benchmarks/synthesis.py                                   # GPU: full exact ray tracing
    python benchmarks/synthesis.py --device cpu --lens-fraction 0.015625 --psnr-rows 16 \
        --throughput-size 576x1024 --throughput-size 144x256 --workers 2 --clips 12
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from any2bokeh.data import ProceduralBackgrounds, ProceduralForegrounds, SyntheticBokehDataModule


def _render_benchmark():
    """benchmarks/render.py as a module (benchmarks/ is a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("render_benchmark", Path(__file__).with_name("render.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def datamodule_throughput(
    height: int, width: int, num_frames: int = 8, workers: int = 2, clips: int = 4, device: str = "cpu", seed: int = 0
) -> dict:
    """Pairs per second through the train loader and the rendering hook, batch size 1.

    The first 1 + 2 * workers clips are left out of the timing: worker start-up, FFT plans, and
    the clips the workers prefetch (2 each) while the first one renders.
    """
    dm = SyntheticBokehDataModule(
        ProceduralForegrounds(num_clips=1000, size=height, seed=seed),
        ProceduralBackgrounds(num_images=1000, size=(height, width), seed=seed),
        num_frames=num_frames,
        height=height,
        width=width,
        batch_size=1,
        num_workers=workers,
        train_size=clips + 1 + 2 * workers,
        seed=seed,
    )
    dm.setup("fit")
    device = torch.device(device)
    loader = iter(dm.train_dataloader())

    def next_pair():
        batch = {name: value.to(device, non_blocking=True) for name, value in next(loader).items()}
        batch = dm.on_after_batch_transfer(batch, 0)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return batch

    for _ in range(1 + 2 * workers):
        next_pair()
    start = time.perf_counter()
    for _ in range(clips):
        next_pair()
    seconds = time.perf_counter() - start

    # The two parts alone, in this process: scene sampling (a worker's job) and rendering.
    dataset, sample_s, render_s = dm.dataset("train"), [], []
    for index in range(min(3, clips)):
        begin = time.perf_counter()
        sample = dataset[index]
        sample_s.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        dm.on_after_batch_transfer({name: value[None].to(device) for name, value in sample.items()}, 0)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        render_s.append(time.perf_counter() - begin)
    return dict(
        height=height,
        width=width,
        num_frames=num_frames,
        workers=workers,
        clips=clips,
        device=str(device),
        pairs_per_second=clips / seconds,
        seconds_per_pair=seconds / clips,
        sampling_seconds=sum(sample_s) / len(sample_s),
        render_seconds=sum(render_s) / len(render_s),
    )


def throughput_table(results: list[dict]) -> str:
    rows = [
        "| resolution | frames / pair | workers | device | pairs / s | s / pair | sampling s / pair (one process) "
        "| rendering s / pair |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows.append(
            f"| {r['width']}x{r['height']} | {r['num_frames']} | {r['workers']} | {r['device']} | "
            f"{r['pairs_per_second']:.3f} | {r['seconds_per_pair']:.2f} | {r['sampling_seconds']:.2f} | "
            f"{r['render_seconds']:.2f} |"
        )
    return "\n".join(rows)


def _size(text: str) -> tuple[int, int]:
    height, width = (int(v) for v in text.lower().split("x"))
    return height, width


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--lens-fraction", type=float, default=1.0, help="see benchmarks/render.py")
    parser.add_argument("--psnr-rows", type=int, default=None, help="see benchmarks/render.py")
    parser.add_argument("--skip-renderers", action="store_true")
    parser.add_argument("--throughput-size", type=_size, action="append", help="HxW, repeatable (default 576x1024)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clips", type=int, default=12)
    args = parser.parse_args()

    print(f"date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
    )
    if not args.skip_renderers:
        render = _render_benchmark()
        result = render.benchmark_renderers(
            576, 1024, 5, args.device, samples_per_side=101, lens_fraction=args.lens_fraction, psnr_rows=args.psnr_rows
        )
        print("\nRenderers, 1024x576, 5 layers:")
        print(render.format_table(result))
    results = [
        datamodule_throughput(h, w, args.frames, args.workers, args.clips, args.device)
        for h, w in (args.throughput_size or [(576, 1024)])
    ]
    print(
        f"\nSyntheticBokehDataModule throughput (procedural sources, batch 1, render_layers on the device, "
        f"{args.clips} clips timed after {1 + 2 * args.workers}):"
    )
    print(throughput_table(results))


if __name__ == "__main__":
    main()
