"""Renderer benchmark: exact ``raytrace`` at 101 lens samples per side against the fast ``render_layers``.

Prints ms per frame for both, their PSNR, and the speed-up, on a random fronto-parallel scene in the paper's
setting (objects at c in [1, 5] over a background at c in [100, 200], K = 32, focus on the nearest object so that
every other layer is defocused: the hardest case for render_layers' compositing).

On a CPU the exact ray tracer at 1024x576 and 7,841 lens samples takes tens of minutes, so it can be timed on an
evenly strided subset of the lens samples (``--lens-fraction``) and extrapolated linearly (its cost is one pass per
lens sample); the PSNR can then be measured on a band of rows (``--psnr-rows``), traced with every lens sample.
The printed table says which figures are extrapolated or partial.

    python benchmarks/render.py                          # full exact run (GPU)
    python benchmarks/render.py --lens-fraction 0.0625 --psnr-rows 64 --device cpu
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch

from any2bokeh.data.layer_scenes import random_layer_scene
from any2bokeh.optics import lens_lattice, raytrace, render_layers
from any2bokeh.optics.raytrace import trace_fronto_parallel


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device):
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    return -10 * math.log10(float(((a - b) ** 2).mean()) + 1e-20)


def benchmark_renderers(
    height: int = 576,
    width: int = 1024,
    layers: int = 5,
    device: str | torch.device = "cpu",
    samples_per_side: int = 101,
    lens_fraction: float = 1.0,
    psnr_rows: int | None = None,
    K: float = 32.0,
    seed: int = 0,
    repeats: int = 3,
) -> dict:
    """Times ``raytrace`` and ``render_layers`` on one random scene with ``layers`` layers (background included).

    Args:
        lens_fraction: time ``raytrace`` on this evenly strided fraction of the lens samples and extrapolate to all
            of them (1.0: a full run).
        psnr_rows: measure the PSNR on this many central rows, traced exactly with all lens samples (None: the
            whole frame; with lens_fraction < 1 the full-frame PSNR needs its own full run, so give a band).
        repeats: ``render_layers`` runs (after one warm-up); the median is reported.

    Returns:
        dict with raytrace_ms, raytrace_extrapolated (bool), render_layers_ms, speedup, psnr_db, psnr_region and the
        settings.
    """
    device = torch.device(device)
    scene = random_layer_scene(height, width, num_objects=layers - 1, K=K, seed=seed)
    # focus on the nearest object: all other layers are defocused
    scene.disp_focus[:] = 1 / scene.planes[0, 0, 2]
    args = [t.to(device) for t in (scene.images, scene.alphas, scene.planes, scene.K, scene.disp_focus)]
    lens = lens_lattice(samples_per_side).to(device)
    n_lens = lens.shape[0]

    render_layers(*args, samples_per_side=samples_per_side)  # warm-up (FFT plans, allocator)
    times = []
    for _ in range(repeats):
        fast, seconds = _timed(lambda: render_layers(*args, samples_per_side=samples_per_side), device)
        times.append(seconds)
    fast_ms = 1000 * sorted(times)[len(times) // 2]

    per_scene = (args[0][0], args[1][0], args[2][0, :, 2].double(), float(args[3][0]), float(args[4][0]))
    if lens_fraction >= 1.0:
        exact, seconds = _timed(lambda: raytrace(*args, samples_per_side=samples_per_side), device)
        exact = exact[0]
        exact_ms, extrapolated, timed_samples = 1000 * seconds, False, n_lens
    else:
        stride = max(1, round(1 / lens_fraction))
        subset = lens[::stride]
        _, seconds = _timed(lambda: trace_fronto_parallel(*per_scene, subset), device)
        exact_ms, extrapolated, timed_samples = 1000 * seconds * n_lens / len(subset), True, len(subset)
        exact = None

    if psnr_rows is None:
        if exact is None:
            exact = trace_fronto_parallel(*per_scene, lens)
        region = "full frame"
        score = psnr(fast[0], exact)
    else:
        r0 = (height - psnr_rows) // 2
        band = trace_fronto_parallel(*per_scene, lens, rows=(r0, r0 + psnr_rows))
        region = f"rows {r0}-{r0 + psnr_rows - 1}"
        score = psnr(fast[0][:, r0 : r0 + psnr_rows], band[:, r0 : r0 + psnr_rows])

    return dict(
        height=height,
        width=width,
        layers=layers,
        device=str(device),
        samples_per_side=samples_per_side,
        lens_samples=n_lens,
        raytrace_ms=exact_ms,
        raytrace_extrapolated=extrapolated,
        raytrace_timed_samples=timed_samples,
        render_layers_ms=fast_ms,
        speedup=exact_ms / fast_ms,
        psnr_db=score,
        psnr_region=region,
        K=float(scene.K[0]),
        disparities=[round(float(1 / c), 4) for c in scene.planes[0, :, 2]],
        disp_focus=float(scene.disp_focus[0]),
    )


def format_table(result: dict) -> str:
    """A small markdown table of one ``benchmark_renderers`` result."""
    note = (
        f" (extrapolated from {result['raytrace_timed_samples']} of {result['lens_samples']} lens samples)"
        if result["raytrace_extrapolated"]
        else ""
    )
    rows = [
        "| renderer | ms / frame |",
        "|---|---|",
        f"| raytrace, {result['samples_per_side']} per side ({result['lens_samples']} samples){note} | {result['raytrace_ms']:.0f} |",
        f"| render_layers, same samples | {result['render_layers_ms']:.0f} |",
        "",
        f"speed-up: {result['speedup']:.0f}x; PSNR render_layers vs raytrace: {result['psnr_db']:.1f} dB ({result['psnr_region']})",
        f"scene: {result['width']}x{result['height']}, {result['layers']} layers, disparities {result['disparities']}, "
        f"d_f {result['disp_focus']:.4f}, K {result['K']}, device {result['device']}",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=576)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--samples-per-side", type=int, default=101)
    parser.add_argument("--lens-fraction", type=float, default=1.0)
    parser.add_argument("--psnr-rows", type=int, default=None)
    parser.add_argument("--K", type=float, default=32.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = benchmark_renderers(
        args.height,
        args.width,
        args.layers,
        args.device,
        samples_per_side=args.samples_per_side,
        lens_fraction=args.lens_fraction,
        psnr_rows=args.psnr_rows,
        K=args.K,
        seed=args.seed,
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, torch {torch.__version__}"
    )
    print(format_table(result))


if __name__ == "__main__":
    main()
