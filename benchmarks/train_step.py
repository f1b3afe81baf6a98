"""Stage-1 training steps on the real SVD architecture (random weights) at 1024x576: time and peak memory.

    python benchmarks/train_step.py                      # GPU: real architecture, bf16-mixed, checkpointing
    python benchmarks/train_step.py --tiny --device cpu --height 64 --width 64   # smoke run of the script

The stage-1 module of `conf/stage/stage1.yaml` trains the whole UNet with AdamW on procedural 4-frame clips
(`conf/data/procedural.yaml`, the ground truth rendered on the device), one clip per step, with gradient
checkpointing, as one GPU of the paper's runs does (§4). Steps after the first are timed (the first
includes CUDA's warm-up); the peak is `torch.cuda.max_memory_allocated` over all steps. The second step runs
under `torch.utils.flop_counter` (and is left out of the timing): its FLOPs over the time per step give the
step's TFLOP/s. `--checkpointing all,deep,none` runs each gradient-checkpointing level in turn; `--frozen-cast on,off`
runs each with the frozen VAE and CLIP held in bf16 for the fit (`any2bokeh.stages.frozen_cast`, the default) and
without (autocast casting their float32 weights at every call), side by side.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import hydra
import lightning as L
import torch

from any2bokeh.models import AnyToBokeh
from any2bokeh.training import compose_train_config

ROOT = Path(__file__).resolve().parents[1]


class StepTimer(L.Callback):
    """Wall-clock seconds of each training batch (forward, backward, optimiser step)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.flops = 0
        self._counter = None

    def _sync(self, module) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._sync(module)
        if batch_idx == 1:  # the counted step: forward, backward and the optimiser's update
            from torch.utils.flop_counter import FlopCounterMode

            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self._sync(module)
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self.flops, self._counter = self._counter.get_total_flops(), None
            return
        self.seconds.append(time.perf_counter() - self._start)


def train_steps(
    device: str,
    tiny: bool,
    height: int,
    width: int,
    frames: int,
    steps: int,
    precision: str,
    levels: str = "all",
    cast_frozen: bool = True,
) -> dict:
    """Run `steps` stage-1 steps; returns the timings, the peak memory and the setting."""
    overrides = [
        "stage=stage1",
        "data=procedural",
        f"data.height={height}",
        f"data.width={width}",
        f"data.num_frames={frames}",
        "data.num_workers=2",
        "logger=none",
    ]
    cfg = compose_train_config(ROOT / "conf", overrides, output_dir=ROOT / "logs" / "benchmark_train_step")
    if tiny:
        net = AnyToBokeh.tiny(seed=0)
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        from any2bokeh.models.svd_xt import random_real_svd

        net = random_real_svd(device)
    net._set_dtype_and_checkpointing(None, levels)
    datamodule = hydra.utils.instantiate(cfg.data)
    module = hydra.utils.instantiate(cfg.module, net=net)
    module.cast_frozen = cast_frozen
    timer = StepTimer()
    trainer = L.Trainer(
        accelerator="gpu" if device.startswith("cuda") else "cpu",
        devices=1,
        precision=precision,
        max_steps=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        default_root_dir=cfg.paths.output_dir,
    )
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(module, datamodule=datamodule)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None
    timed = timer.seconds[1:] or timer.seconds
    return {
        "model": "tiny" if tiny else "SVD img2vid-xt architecture (random weights)",
        "trainable_m": sum(p.numel() for p in module.parameters() if p.requires_grad) / 1e6,
        "size": f"{height}x{width}",
        "frames": frames,
        "precision": precision,
        "steps": len(timer.seconds),
        "seconds_per_step": sum(timed) / len(timed),
        "first_step": timer.seconds[0],
        "peak_gib": peak,
        "checkpointing": levels,
        "frozen_cast": "on" if cast_frozen else "off",
        "tflops": timer.flops / (sum(timed) / len(timed)) / 1e12 if timer.flops else None,
    }


def format_table(results: list[dict]) -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "CPU"
    first = results[0]
    lines = [
        f"Stage 1 training step, {first['model']}, {first['size']}, {first['frames']} frames, batch 1, "
        f"{first['precision']}; {device}, torch {torch.__version__}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        "",
        "| gradient checkpointing | frozen VAE + CLIP in bf16 | trainable params (M) | s / step (after the first) | "
        "first step (s) | TFLOP/s | peak memory (GiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        peak = "n/a (CPU)" if result["peak_gib"] is None else f"{result['peak_gib']:.1f}"
        tflops = "n/a" if result["tflops"] is None else f"{result['tflops']:.3g}"
        lines.append(
            f"| {result['checkpointing']} | {result['frozen_cast']} | {result['trainable_m']:,.1f} | {result['seconds_per_step']:.2f} | "
            f"{result['first_step']:.2f} | {tflops} | {peak} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="the tiny random model instead of the real architecture")
    parser.add_argument("--height", type=int, default=576)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4, help="steps per run: one warm-up, one counted, the rest timed")
    parser.add_argument("--checkpointing", default="all", help="comma-separated levels: all, deep, none")
    parser.add_argument("--frozen-cast", default="on", help="comma-separated: on, off (side by side)")
    parser.add_argument("--precision", default=None, help="default: bf16-mixed on a GPU, 32-true on the CPU")
    args = parser.parse_args()
    if not args.tiny and not args.device.startswith("cuda"):
        sys.exit("the real SVD architecture at 1024x576 needs a GPU: pass --tiny to run the script on the CPU")
    precision = args.precision or ("bf16-mixed" if args.device.startswith("cuda") else "32-true")
    results = []
    for levels in args.checkpointing.split(","):
        for cast in args.frozen_cast.split(","):
            if cast not in ("on", "off"):
                sys.exit(f"--frozen-cast takes on and off, got {cast!r}")
            sizes = (args.height, args.width, args.frames, args.steps)
            results.append(train_steps(args.device, args.tiny, *sizes, precision, levels, cast == "on"))
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    print(format_table(results))


if __name__ == "__main__":
    main()
