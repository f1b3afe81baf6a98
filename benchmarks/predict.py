"""Inference benchmark: seconds per frame and peak memory of the renderers that refocus videos.

Classical renderer (``render_disparity_map``, the weightless default): it refocuses one frame from the frame and its
disparity map alone. The frame and map come from a random scene in the paper's setting (``random_layer_scene``:
textured objects with soft, hair-like edges at c in [1, 5] over a background with highlights at c in [100, 200]), so
the same run renders the scene's true layers with ``render_layers`` (the training ground truth) as the baseline, and
reports how close the classical render comes to it.

    python benchmarks/predict.py                       # 1024x576, K = 16 (the paper's demos), at most 32 soft layers
    python benchmarks/predict.py --K 32                # the paper's largest test K
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch

from any2bokeh.render import random_layer_scene, render_disparity_map, render_layers


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    return -10 * math.log10(float(((a - b) ** 2).mean()) + 1e-20)


def _rss_gb(field: str = "VmRSS") -> float:
    """Resident memory of this process in GB (VmRSS: now, VmHWM: the peak so far); Linux only."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1e6
    return float("nan")


def _timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall-clock and CPU seconds (all threads) of ``repeats`` calls. On a shared machine the wall time grows
    with the load; the CPU time does not, and bounds the wall time of a quiet machine."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return sorted(walls)[len(walls) // 2], sorted(cpus)[len(cpus) // 2]


def frame_and_disparity(scene) -> tuple[torch.Tensor, torch.Tensor]:
    """What a video gives for a layered scene: the all-in-focus frame [1, 3, H, W] (layers composited "over",
    nearest first) and a disparity map [1, H, W], each pixel taking the nearest layer with alpha >= 0.5, min-max
    normalised as real disparity is."""
    images, alphas = scene.images[0], scene.alphas[0]  # [L, 3, H, W], [L, 1, H, W]
    layer_disp = (1 / scene.planes[0, :, 2]).float()  # [L]
    frame = torch.zeros_like(images[0])
    transmittance = torch.ones_like(alphas[0])
    disparity = torch.full_like(alphas[0, 0], float(layer_disp[-1]))
    for layer in reversed(range(len(images))):  # farthest first, so nearer layers overwrite the map
        disparity = torch.where(alphas[layer, 0] >= 0.5, layer_disp[layer], disparity)
    for layer in range(len(images)):
        frame += transmittance * alphas[layer] * images[layer]
        transmittance = transmittance * (1 - alphas[layer])
    return frame[None], disparity[None]


def benchmark_classical(
    height: int = 576,
    width: int = 1024,
    K: float = 16.0,
    num_layers: int = 32,
    exact_borders: bool = False,
    seed: int = 0,
    repeats: int = 3,
) -> dict:
    """Times ``render_disparity_map`` on one frame of a random scene, against ``render_layers`` on its true layers.

    K is the paper's unit: pixels of blur radius per unit of normalised disparity (at this width); the layered
    ground truth gets the same blur in raw units (K divided by the frame's disparity span). Returns a dict of timings
    (median of ``repeats`` after a warm-up), peak memory and the PSNR of the classical render against the layered
    ground truth.
    """
    scene = random_layer_scene(height, width, num_objects=4, seed=seed)
    frame, raw = frame_and_disparity(scene)
    d_min, d_max = float(raw.min()), float(raw.max())
    disparity = (raw - d_min) / (d_max - d_min)
    k_norm = K
    scene.K[:] = K / (d_max - d_min)
    d_f_norm = (float(scene.disp_focus[0]) - d_min) / (d_max - d_min)
    # a real disparity map is continuous, so every soft layer holds pixels: the background becomes a ground-like
    # ramp (farther at the top) for a second, timing-only run
    background = disparity == disparity.min()
    ramp = torch.linspace(0, 0.3, height)[:, None].expand(height, width)[None]
    continuous = torch.where(background, ramp, 0.3 + 0.7 * disparity)

    def render(disp):
        return render_disparity_map(frame, disp, k_norm, d_f_norm, num_layers, exact_borders=exact_borders)

    rss_before = _rss_gb()
    out = render(disparity)  # warm-up (FFT plans, allocator)
    wall, cpu = _timed(lambda: render(disparity), repeats)
    wall_continuous, cpu_continuous = _timed(lambda: render(continuous), repeats)
    peak = _rss_gb("VmHWM")

    start = time.perf_counter()
    truth = render_layers(scene.images, scene.alphas, scene.planes, scene.K, scene.disp_focus)
    truth_seconds = time.perf_counter() - start
    return dict(
        height=height,
        width=width,
        K=K,
        num_layers=num_layers,
        exact_borders=exact_borders,
        disparities=[round(float(1 / c), 4) for c in scene.planes[0, :, 2]],
        disp_focus=float(scene.disp_focus[0]),
        classical_s=wall,
        classical_cpu_s=cpu,
        continuous_s=wall_continuous,
        continuous_cpu_s=cpu_continuous,
        threads=torch.get_num_threads(),
        render_layers_s=truth_seconds,
        rss_before_gb=rss_before,
        peak_rss_gb=peak,
        psnr_db=psnr(out, truth),
    )


def format_classical(result: dict) -> str:
    """A small markdown table of one ``benchmark_classical`` result."""
    rows = [
        f"| renderer | s / frame (wall) | CPU s / frame ({result['threads']} threads) |",
        "|---|---|---|",
        f"| render_disparity_map (soft layers 1 px of blur apart, at most {result['num_layers']}), the scene's disparity map | "
        f"{result['classical_s']:.2f} | {result['classical_cpu_s']:.2f} |",
        f"| render_disparity_map, same frame, continuous disparity (every layer used) | "
        f"{result['continuous_s']:.2f} | {result['continuous_cpu_s']:.2f} |",
        f"| baseline: render_layers on the scene's true layers | {result['render_layers_s']:.2f} | |",
        "",
        f"peak RSS {result['peak_rss_gb']:.2f} GB (before rendering: {result['rss_before_gb']:.2f} GB)",
        f"PSNR classical vs the layered ground truth: {result['psnr_db']:.1f} dB",
        f"scene: {result['width']}x{result['height']}, disparities {result['disparities']}, d_f {result['disp_focus']:.4f}, "
        f"K {result['K']} (normalised units), exact_borders {result['exact_borders']}",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=576)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--K", type=float, default=16.0)
    parser.add_argument("--num-layers", type=int, default=32)
    parser.add_argument("--exact-borders", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = benchmark_classical(args.height, args.width, args.K, args.num_layers, args.exact_borders, args.seed)
    print(f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(format_classical(result))


if __name__ == "__main__":
    main()
