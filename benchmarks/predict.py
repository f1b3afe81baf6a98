"""Inference benchmark: seconds per frame and peak memory of the renderers that refocus videos.

Classical renderer (``render_disparity_map``, the weightless default): it refocuses one frame from the frame and its
disparity map alone. The frame and map come from a random scene in the paper's setting (``random_layer_scene``:
textured objects with soft, hair-like edges at c in [1, 5] over a background with highlights at c in [100, 200]), so
the same run renders the scene's true layers with ``render_layers`` (the training ground truth) as the baseline, and
reports how close the classical render comes to it.

    python benchmarks/predict.py                       # 1024x576, K = 16 (the paper's demos), at most 32 soft layers
    python benchmarks/predict.py --K 32                # the paper's largest test K

The model sections time ``ModelRenderer`` (the UNet over overlapping windows, the windowed decoding) on a clip of
``--frames`` frames at its working size: the tiny random model (``model``, any device) and the real SVD img2vid-xt
architecture with random weights in bf16 at 576x1024 (``real``, GPU only; the paper reports 0.094 s/frame and
13.6 GB on an H800). ``overlap`` measures the weighted overlap's own blending, and how many frames the model
processes per output frame with window 8 and overlap 4.

``release`` is the authors' released architecture (`RELEASE_OPTIONS`, random weights, the real SVD-xt sizes) beside
this project's: the parameters of each (on any device, built on the meta device), and on a GPU its seconds per
frame and peak memory at 576x1024 in bf16.

    python benchmarks/predict.py --sections model,overlap --device cpu
    python benchmarks/predict.py --sections real,release,overlap --device cuda
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch

from any2bokeh.data.layer_scenes import random_layer_scene
from any2bokeh.optics import render_disparity_map, render_layers


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


# ---- the model renderer and the weighted overlap (§3.5) ----


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_gb(device: torch.device) -> float:
    """Peak memory since the last reset: CUDA's allocator on a GPU, the process's peak RSS on the CPU."""
    return torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else _rss_gb("VmHWM")


class PartTimer:
    """Times and counts the model's parts while a render runs: the VAE encoder (all-in-focus and V_D frames),
    CLIP, the UNet and the decoder. Wraps the instance's methods; `close()` restores them."""

    PARTS = {"encode": ("vae", "encode"), "clip": ("image_encoder", "forward"), "unet": ("unet", "forward")}

    def __init__(self, model, device: torch.device) -> None:
        self.device, self.seconds, self.frames, self.restore = device, {}, {}, []
        targets = {name: getattr(model, owner) for name, (owner, _) in self.PARTS.items()}
        targets["decode"] = model.vae
        methods = {**{name: method for name, (_, method) in self.PARTS.items()}, "decode": "decode"}
        for name, owner in targets.items():
            if owner is None:
                continue
            original = getattr(owner, methods[name])
            setattr(owner, methods[name], self._wrap(name, original))
            self.restore.append((owner, methods[name]))

    def _wrap(self, name: str, original):
        def timed(*args, **kwargs):
            first = args[0] if args else next(iter(kwargs.values()))
            count = first.shape[0] * (first.shape[1] if name == "unet" else 1)
            _sync(self.device)
            start = time.perf_counter()
            out = original(*args, **kwargs)
            _sync(self.device)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
            self.frames[name] = self.frames.get(name, 0) + count
            return out

        return timed

    def close(self) -> None:
        for owner, method in self.restore:
            owner.__dict__.pop(method, None)


def benchmark_model(
    model,
    device: torch.device,
    height: int,
    width: int,
    frames: int = 16,
    window: int = 8,
    overlap: int = 4,
    repeats: int = 2,
    schedule: str = "stream",
    decode: str = "windows",
) -> dict:
    """Seconds per frame, peak memory and per-part figures of `ModelRenderer` on a clip at its working size.

    The clip is uint8 on the CPU, as `predict.py` reads it; everything after (resizing, the UNet over
    overlapping windows, the windowed decoding, the native-size output) is timed. A last, separate run counts
    and times the parts (`PartTimer`: device syncs around each part, so it is not in the time per frame).
    """
    from any2bokeh.inference.model_renderer import ModelRenderer

    generator = torch.Generator().manual_seed(0)
    clip = torch.randint(0, 256, (frames, 3, height, width), dtype=torch.uint8, generator=generator)
    disparity = torch.rand(frames, 1, height, width, generator=generator)
    renderer = ModelRenderer(
        model, window=window, overlap=overlap, area=height * width, schedule=schedule, decode=decode
    )
    d_f, k = torch.full((frames,), 0.5), torch.full((frames,), 16.0)

    rendered = []

    def run():
        rendered[:] = [renderer(clip, disparity, d_f, k)]
        _sync(device)

    run()  # warm-up (kernels, allocator)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    wall, cpu = _timed(run, repeats)
    peak = _peak_gb(device)
    parts = PartTimer(model, device)
    try:
        run()
    finally:
        parts.close()
    return dict(
        height=height,
        width=width,
        frames=frames,
        window=window,
        overlap=overlap,
        schedule=schedule if decode == "windows" else f"{schedule}, decode in chunks",
        decode=decode,
        output=rendered[0],
        dtype=str(model.dtype),
        seconds_per_frame=wall / frames,
        cpu_seconds_per_frame=cpu / frames,
        peak_gb=peak,
        device=str(device),
        part_ms_per_frame={name: 1e3 * seconds / frames for name, seconds in parts.seconds.items()},
        # the encoder sees all-in-focus and V_D frames: 2 per output frame at best
        passes_per_frame={name: count / frames for name, count in parts.frames.items()},
    )


def format_parts(results: list[dict]) -> str:
    """Per-part ms and passes per output frame of each schedule, and the speed ratio."""
    names = ("encode", "clip", "unet", "decode")
    lines = ["| schedule | " + " | ".join(f"{n} ms (passes)" for n in names) + " |", "|---" * 5 + "|"]
    for result in results:
        cells = [
            f"{result['part_ms_per_frame'].get(n, 0):.1f} ({result['passes_per_frame'].get(n, 0):.2f})" for n in names
        ]
        lines.append(f"| {result['schedule']} | " + " | ".join(cells) + " |")
    if len(results) > 1:
        old = results[0]
        for new in results[1:]:
            lines.append(
                f"{new['schedule']} / {old['schedule']}: {new['seconds_per_frame'] / old['seconds_per_frame']:.2f} "
                f"of the time (wall), {new['cpu_seconds_per_frame'] / old['cpu_seconds_per_frame']:.2f} (CPU); "
                f"largest difference of the output {(new['output'].float() - old['output'].float()).abs().max():.0f} "
                "(uint8 levels)"
            )
        chunked = [r for r in results if r["decode"] == "chunks"]
        if chunked:
            lines.append(seam_report(results[0], chunked[0]))
    return "\n".join(lines)


def seam_report(default: dict, chunked: dict) -> str:
    """Do chunk borders show? The frame-to-frame change across each border against the other frames, both
    decodes, and the chunked output's RM-like mean difference from the default at the border frames."""

    def steps(result):
        frames = result["output"].float()
        return (frames[1:] - frames[:-1]).abs().mean(dim=(1, 2, 3))  # change from frame t to t + 1

    window = chunked["window"]
    borders = [t - 1 for t in range(window, chunked["frames"], window)]  # the step from t-1 to t
    cells = []
    for result in (default, chunked):
        change = steps(result)
        inside = [i for i in range(change.numel()) if i not in borders]
        cells.append(f"{float(change[borders].mean() / change[inside].mean()):.2f}")
    at = [t for b in borders for t in (b, b + 1)]
    gap = float((chunked["output"].float()[at] - default["output"].float()[at]).abs().mean())
    return (
        f"seams: frame-to-frame change across the chunk borders / elsewhere: default {cells[0]}, chunks {cells[1]}; "
        f"at the border frames the chunked output differs from the default by {gap:.2f} levels on average"
    )


def benchmark_overlap(
    device: torch.device, frames: int = 100, window: int = 8, overlap: int = 4, repeats: int = 5
) -> dict:
    """The cost of the weighted overlap itself: blending [1, T, 4, 72, 128] latents (576x1024) with an identity `fn`,
    against the same identity on the whole clip, and how many frames the model processes per output frame."""
    from any2bokeh.inference.overlap import overlap_windows, weighted_overlap

    latents = torch.randn(1, frames, 4, 72, 128, device=device)

    def blended():
        weighted_overlap(lambda x: x.clone(), latents, window, overlap)
        _sync(device)

    def whole():
        latents.clone()
        _sync(device)

    blended()
    blend_s, _ = _timed(blended, repeats)
    whole_s, _ = _timed(whole, repeats)
    processed = sum(w.stop - w.start for w in overlap_windows(frames, window, overlap))
    return dict(
        frames=frames,
        window=window,
        overlap=overlap,
        device=str(device),
        blend_ms_per_frame=1e3 * (blend_s - whole_s) / frames,
        processed_per_frame=processed / frames,
    )


def parameter_counts() -> str:
    """Parameters of this project's model and of the release's architecture at the real sizes (meta device)."""
    from any2bokeh.models.options import RELEASE_OPTIONS
    from any2bokeh.models.svd_xt import random_real_svd

    lines = ["| architecture | UNet | of which new | VAE (with skips) | CLIP |", "|---|---|---|---|---|"]
    for name, options in (("this project (defaults)", {}), ("the authors' release", RELEASE_OPTIONS)):
        model = random_real_svd("meta", **options)
        unet = sum(p.numel() for p in model.unet.parameters())
        new = sum(p.numel() for n, p in model.unet.named_parameters() if n.startswith(model.unet.new_module_prefixes))
        vae = sum(p.numel() for p in model.vae.parameters())
        clip = sum(p.numel() for p in model.image_encoder.parameters())
        lines.append(f"| {name} | {unet:,} | {new:,} | {vae:,} | {clip:,} |")
    # what the release's files hold beyond it, never used by its computation: ff_k, linear, conv_in_mpi
    widths = [block.to_q.in_features for block in model.unet.mpi_blocks]
    cond = model.unet.unet.conv_in.out_channels
    unused = sum(12 * d * d + 9 * d + d * cond + d for d in widths) + cond * 4 * 9 + cond
    lines.append(f"(the release's files hold {unused:,} more UNet parameters, in ff_k, linear and conv_in_mpi)")
    return "\n".join(lines)


def format_model(result: dict, name: str) -> str:
    return (
        f"| {name}, {result['schedule']} | {result['device']} | {result['width']}x{result['height']} | {result['frames']} "
        f"({result['window']}/{result['overlap']}) | {result['dtype'].removeprefix('torch.')} | "
        f"{result['seconds_per_frame']:.3f} | {result['cpu_seconds_per_frame']:.3f} | {result['peak_gb']:.2f} |"
    )


MODEL_HEADER = (
    "| model | device | size | frames (window/overlap) | dtype | s / frame | CPU s / frame | peak memory (GB) |\n"
    "|---|---|---|---|---|---|---|---|"
)


def format_overlap(result: dict) -> str:
    return (
        f"weighted overlap on {result['device']}: {result['frames']} frames of 576x1024 latents, window {result['window']}, "
        f"overlap {result['overlap']}: blending costs {result['blend_ms_per_frame']:.3f} ms per frame; the model "
        f"processes {result['processed_per_frame']:.2f} frames per output frame (the real cost of the overlap)"
    )


SCHEDULES = (("two_pass", "windows"), ("stream", "windows"), ("stream", "chunks"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=576)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--K", type=float, default=16.0)
    parser.add_argument("--num-layers", type=int, default=32)
    parser.add_argument("--exact-borders", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--sections",
        default="classical,model,real,overlap",
        help="comma-separated: classical (CPU), model (the tiny model), real (the SVD architecture in bf16, GPU only), "
        "release (the authors' architecture: parameters; timings on a GPU), "
        "overlap (the weighted overlap's own cost)",
    )
    parser.add_argument("--frames", type=int, default=16, help="clip length of the model sections")
    parser.add_argument("--repeats", type=int, default=2, help="timed renders per schedule (after a warm-up)")
    parser.add_argument("--tiny-size", default="72x128", help="HxW of the tiny model's clip")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sections = set(args.sections.split(","))
    unknown = sections - {"classical", "model", "real", "release", "overlap"}
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}")
    device = torch.device(args.device)
    print(
        f"machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, torch {torch.__version__}"
    )
    if "classical" in sections:
        result = benchmark_classical(args.height, args.width, args.K, args.num_layers, args.exact_borders, args.seed)
        print(format_classical(result))
    rows, parts = [], []
    if "model" in sections:
        from any2bokeh.models import AnyToBokeh

        height, width = (int(v) for v in args.tiny_size.split("x"))
        tiny = AnyToBokeh.tiny(seed=0).to(device)
        results = [
            benchmark_model(tiny, device, height, width, args.frames, repeats=args.repeats, schedule=s, decode=d)
            for s, d in SCHEDULES
        ]
        rows += [format_model(result, "tiny (test sizes)") for result in results]
        parts.append(format_parts(results))
    if "real" in sections:
        if device.type != "cuda":
            print(
                "real SVD architecture: skipped, it needs a GPU (576x1024 in bf16; the paper: 0.094 s/frame, 13.6 GB on an H800)"
            )
        else:
            import sys
            from pathlib import Path

            sys.path.insert(0, str(Path(__file__).parent))
            from any2bokeh.models.svd_xt import random_real_svd

            torch.cuda.reset_peak_memory_stats()
            model = random_real_svd(device, torch.bfloat16)
            print(
                f"real architecture built: {torch.cuda.max_memory_allocated() / 1e9:.2f} GB of weights on {torch.cuda.get_device_name()}"
            )
            results = [
                benchmark_model(
                    model, device, args.height, args.width, args.frames, repeats=args.repeats, schedule=s, decode=d
                )
                for s, d in SCHEDULES
            ]
            rows += [format_model(result, "SVD img2vid-xt architecture (random weights)") for result in results]
            parts.append(format_parts(results))
            del model
    if "release" in sections:
        print(parameter_counts())
        if device.type != "cuda":
            print("the authors' architecture: timings skipped, they need a GPU (576x1024 in bf16)")
        else:
            from any2bokeh.models.options import RELEASE_OPTIONS
            from any2bokeh.models.svd_xt import random_real_svd

            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            model = random_real_svd(device, torch.bfloat16, **RELEASE_OPTIONS)
            result = benchmark_model(model, device, args.height, args.width, args.frames, repeats=args.repeats)
            rows.append(format_model(result, "the authors' release architecture (random weights)"))
            parts.append(format_parts([result]))
            del model
    if rows:
        print(MODEL_HEADER)
        print("\n".join(rows))
        print("\n\n".join(parts))
    if "overlap" in sections:
        print(format_overlap(benchmark_overlap(device)))


if __name__ == "__main__":
    main()
