"""Size and cost of BokehUNet against the base SVD UNet.

    python benchmarks/model.py [--frames 1] [--repeats 20]

1. Parameters of the real SVD img2vid UNet config, built under FakeTensorMode (no weights, no memory).
2. GFLOPs per frame at 576x1024 (latents 72x128), counted with torch.utils.flop_counter under
   FakeTensorMode, for the base UNet and for BokehUNet (default and alternative MPI settings).
   Attention is counted too: torch's counter has no formula for the CPU SDPA kernel, so one is supplied.
3. Forward and forward+backward time of the tiny test-size model on this CPU, base vs BokehUNet.
4. On CUDA only: seconds per frame and peak memory at 576x1024 in bf16, base vs BokehUNet.

    python benchmarks/model.py --load [--dtype bf16] [--dir /tmp]

5. Load time and peak memory of a whole AnyToBokeh of the real sizes (SVD img2vid-xt UNet, its 4-block
   VAE, the ViT-H image encoder), random weights saved once to a temporary folder (about 4.8 GB in bf16):
   `from_checkpoint` and `from_pretrained` (built on the meta device, then the tensors) against the old
   path, which built a randomly initialised model and then copied the checkpoint into it. Each load runs
   in its own process, so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import copy
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from diffusers import UNetSpatioTemporalConditionModel
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from any2bokeh.models import BokehUNet, mpi_regions
from any2bokeh.models.tiny import tiny_unet

PAPER_PARAMETERS_M = 1880.0
PAPER_GFLOPS = 3620.0
PAPER_SECONDS_PER_FRAME = 0.094
PAPER_PEAK_GB = 13.6
HEIGHT, WIDTH = 576, 1024
LATENT_HEIGHT, LATENT_WIDTH = HEIGHT // 8, WIDTH // 8
# (ff_mult, max_key_tokens): the default first, then the alternatives it was chosen from
MPI_VARIANTS = [(2, 576), (1, 576), (4, 576), (2, 2304), (1, None)]


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


FLOP_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


def unet_inputs(batch: int, frames: int, height: int, width: int, context_dim: int, dtype=torch.float32, device=None):
    """Random UNet inputs: (positional args, BokehUNet keyword args)."""
    args = (
        torch.randn(batch, frames, 8, height, width, dtype=dtype, device=device),
        torch.tensor(1.0, device=device),
        torch.randn(batch, 1, context_dim, dtype=dtype, device=device),
        torch.tensor([[7.0, 127.0, 0.0]], dtype=dtype, device=device).expand(batch, 3),
    )
    disparity = torch.rand(batch, frames, 8 * height, 8 * width, device=device)
    kwargs = {
        "k": torch.full((batch,), 16.0, device=device),
        "mpi_regions": mpi_regions(disparity, torch.rand(batch, frames, device=device)),
        "cond_latents": torch.randn(batch, frames, 4, height, width, dtype=dtype, device=device),
    }
    return args, kwargs


def count_gflops(model, args, kwargs=None, attention: bool = True) -> float:
    formulas = FLOP_FORMULAS if attention else {}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=formulas) as counter:
        model(*args, **(kwargs or {}))
    return counter.get_total_flops() / 1e9


def real_config_table(frames: int) -> list[str]:
    lines = []
    with FakeTensorMode():
        base = UNetSpatioTemporalConditionModel()
        base_params = sum(p.numel() for p in base.parameters())
        args, kwargs = unet_inputs(1, frames, LATENT_HEIGHT, LATENT_WIDTH, base.config.cross_attention_dim)
        base_gflops = count_gflops(base, args) / frames
        without_attention = count_gflops(base, args, attention=False) / frames
        lines.append(f"SVD UNet (base): {base_params:,} parameters; {base_gflops:,.1f} GFLOP/frame at {HEIGHT}x{WIDTH}")
        lines.append(
            f"  of which outside the attention kernels (torch's counter without an SDPA formula): "
            f"{without_attention:,.1f}"
        )
        lines.append(f"paper (whole model): {PAPER_PARAMETERS_M:,.0f} M parameters, {PAPER_GFLOPS:,.0f} GFLOPs")
        lines.append("")
        lines.append("| ff_mult | max_key_tokens | added params (M) | GFLOP/frame | FLOP overhead |")
        lines.append("|---|---|---|---|---|")
        for ff_mult, max_key_tokens in MPI_VARIANTS:
            model = BokehUNet(UNetSpatioTemporalConditionModel(), ff_mult=ff_mult, max_key_tokens=max_key_tokens)
            added = sum(p.numel() for _, p in model.new_parameters())
            gflops = count_gflops(model, args, kwargs) / frames
            default = " (default)" if (ff_mult, max_key_tokens) == MPI_VARIANTS[0] else ""
            lines.append(
                f"| {ff_mult}{default} | {max_key_tokens} | {added / 1e6:,.1f} | {gflops:,.1f} | "
                f"{100 * (gflops - base_gflops) / base_gflops:+.1f}% |"
            )
    return lines


def _timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def _median_seconds(step, repeats: int) -> float:
    step()  # warm-up
    return statistics.median(_timed(step) for _ in range(repeats))


def tiny_cpu_table(repeats: int) -> list[str]:
    """Base and BokehUNet timed alternately, so that a change in the machine's load hits both alike."""
    torch.manual_seed(0)
    base = tiny_unet()
    model = BokehUNet(copy.deepcopy(base))
    args, kwargs = unet_inputs(1, 4, 8, 8, base.config.cross_attention_dim)
    calls = {"base tiny UNet": lambda: base(*args).sample, "tiny BokehUNet": lambda: model(*args, **kwargs)}

    def forward(call):
        with torch.no_grad():
            call()

    def forward_backward(call):
        call().square().mean().backward()

    times = {(name, kind): [] for name in calls for kind in ("fwd", "fwd+bwd")}
    for repeat in range(repeats + 1):
        for name, call in calls.items():
            for kind, step in (("fwd", forward), ("fwd+bwd", forward_backward)):
                seconds = _timed(lambda: step(call))
                if repeat:  # the first round warms up
                    times[name, kind].append(seconds)
    lines = [
        "| tiny model, 4 frames of 8x8 latents, CPU | forward (ms) | forward+backward (ms) |",
        "|---|---|---|",
    ]
    for name in calls:
        lines.append(
            f"| {name} | {1e3 * statistics.median(times[name, 'fwd']):.1f} | "
            f"{1e3 * statistics.median(times[name, 'fwd+bwd']):.1f} |"
        )
    ratio = [
        statistics.median(times["tiny BokehUNet", kind]) / statistics.median(times["base tiny UNet", kind])
        for kind in ("fwd", "fwd+bwd")
    ]
    lines.append(f"| ratio | {ratio[0]:.2f} | {ratio[1]:.2f} |")
    lines.append(f"(medians of {repeats} alternating runs)")
    return lines


def device_table(device: torch.device, build, latent_size: tuple[int, int], frames: int, repeats: int) -> list[str]:
    """Seconds per frame and peak memory of `build()` and its BokehUNet, bf16 inference on `device`."""
    dtype = torch.bfloat16
    on_cuda = device.type == "cuda"
    lines = ["| model | s/frame | peak memory (GB) |", "|---|---|---|"]
    base = build().to(device, dtype)
    args, kwargs = unet_inputs(1, frames, *latent_size, base.config.cross_attention_dim, dtype, device)
    for name in ("base SVD UNet", "BokehUNet"):
        model, call_kwargs = (base, {}) if name == "base SVD UNet" else (BokehUNet(base), kwargs)
        if on_cuda:
            torch.cuda.reset_peak_memory_stats()

        def step():
            with torch.no_grad():
                model(*args, **call_kwargs)
            if on_cuda:
                torch.cuda.synchronize()

        seconds = _median_seconds(step, repeats) / frames
        peak = f"{torch.cuda.max_memory_allocated() / 1e9:.1f}" if on_cuda else "n/a"
        lines.append(f"| {name} | {seconds:.3f} | {peak} |")
    lines.append(f"| paper (whole model, H800) | {PAPER_SECONDS_PER_FRAME} | {PAPER_PEAK_GB} |")
    return lines


def gpu_table(frames: int, repeats: int) -> list[str]:
    if not torch.cuda.is_available():
        return ["GPU section skipped: CUDA is not available."]
    header = f"GPU: {torch.cuda.get_device_name()}, {frames} frames at {HEIGHT}x{WIDTH}, bf16, inference (no grad)"
    table = device_table(
        torch.device("cuda"), UNetSpatioTemporalConditionModel, (LATENT_HEIGHT, LATENT_WIDTH), frames, repeats
    )
    return [header] + table


def real_size_components() -> dict:
    """SVD img2vid-xt's UNet, VAE and ViT-H image encoder configs (randomly initialised where built)."""
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from any2bokeh.models.tiny import CLIPImageProcessor

    clip_config = CLIPVisionConfig(
        hidden_size=1280,
        intermediate_size=5120,
        num_hidden_layers=32,
        num_attention_heads=16,
        patch_size=14,
        image_size=224,
        projection_dim=1024,
    )
    return {
        "unet": UNetSpatioTemporalConditionModel(),
        "vae": AutoencoderKLTemporalDecoder(
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4, layers_per_block=2
        ),
        "image_encoder": CLIPVisionModelWithProjection(clip_config),
        "feature_extractor": CLIPImageProcessor(crop_size={"height": 224, "width": 224}, size={"shortest_edge": 224}),
    }


def write_real_size_model(folder: Path, dtype: torch.dtype) -> int:
    """A Lightning-style checkpoint (`last.ckpt`) and a `save_pretrained` folder (`saved/`) of random weights."""
    from any2bokeh.models import AnyToBokeh
    from any2bokeh.models.serialization import empty_parameters

    with empty_parameters():
        model = AnyToBokeh(**real_size_components())
    generator = torch.Generator().manual_seed(0)
    state = {
        name: torch.randn(value.shape, generator=generator, dtype=dtype) * 0.02
        for name, value in model.state_dict().items()
    }
    torch.save(
        {"state_dict": {f"net.{name}": value for name, value in state.items()}, "any2bokeh_config": model.config},
        folder / "last.ckpt",
    )
    model.load_state_dict(state, assign=True)
    model.save_pretrained(folder / "saved")
    return sum(value.numel() for value in state.values())


def load_once(method: str, folder: Path) -> None:
    """One load in this process; prints `seconds peak_rss_gb parameter_dtype`."""
    from any2bokeh.models import AnyToBokeh

    start = time.perf_counter()
    if method == "from_checkpoint":
        model = AnyToBokeh.from_checkpoint(folder / "last.ckpt")
    elif method == "from_checkpoint_fp32":
        model = AnyToBokeh.from_checkpoint(folder / "last.ckpt", dtype=torch.float32)
    elif method == "from_pretrained":
        model = AnyToBokeh.from_pretrained(folder / "saved")
    elif method == "old":  # a randomly initialised model (float32, as from_svd built it), then a copy
        model = AnyToBokeh.from_checkpoint(folder / "last.ckpt", model=AnyToBokeh(**real_size_components()))
    else:
        raise ValueError(f"unknown load method {method!r}")
    seconds = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # ru_maxrss is in KiB on Linux
    print(f"{seconds:.2f} {peak_gb:.1f} {next(model.parameters()).dtype}")


LOAD_METHODS = {
    "old": "old path: random fp32 model, then copy",
    "from_checkpoint": "from_checkpoint (meta, then tensors)",
    "from_checkpoint_fp32": "from_checkpoint(dtype=float32)",
    "from_pretrained": "from_pretrained (meta, then tensors)",
}


def load_table(dtype: torch.dtype, directory: str | None) -> list[str]:
    folder = Path(tempfile.mkdtemp(prefix="any2bokeh-load-", dir=directory))
    try:
        start = time.perf_counter()
        parameters = write_real_size_model(folder, dtype)
        written = time.perf_counter() - start
        size_gb = (folder / "last.ckpt").stat().st_size / 1e9
        lines = [
            f"AnyToBokeh of the real sizes: {parameters:,} parameters, {dtype} checkpoint of {size_gb:.1f} GB "
            f"(written in {written:.0f} s)",
            "",
            "| load | seconds | peak RSS (GB) | parameters | vs old path |",
            "|---|---|---|---|---|",
        ]
        results = {}
        for method in LOAD_METHODS:
            # the files are in the page cache after writing: every method reads from memory, not disk
            command = [sys.executable, __file__, "--load-once", method, str(folder)]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
            results[method] = (float(output[-3]), float(output[-2]), output[-1])
        for method, (seconds, peak, parameter_dtype) in results.items():
            ratio = results["old"][0] / seconds
            lines.append(
                f"| {LOAD_METHODS[method]} | {seconds:.1f} | {peak:.1f} | {parameter_dtype} | {ratio:.1f}x faster |"
            )
        return lines
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1, help="frames per call for the FLOP count")
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats (median)")
    parser.add_argument("--gpu-frames", type=int, default=8, help="frames per call on the GPU")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads (1 keeps timings steady on a shared machine)"
    )
    parser.add_argument("--load", action="store_true", help="only the load-time section (writes ~5 GB to --dir)")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"], help="dtype of the saved weights")
    parser.add_argument("--dir", default=None, help="where the temporary weights go (default: the temp folder)")
    parser.add_argument("--load-once", nargs=2, metavar=("METHOD", "FOLDER"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    if options.load_once:
        load_once(options.load_once[0], Path(options.load_once[1]))
        return
    print(
        f"# {platform.node()} | {platform.processor() or platform.machine()} | {torch.get_num_threads()} threads "
        f"| torch {torch.__version__} | {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
    )
    if options.load:
        dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[options.dtype]
        print("\n".join(load_table(dtype, options.dir)))
        return
    for section in (
        real_config_table(options.frames),
        tiny_cpu_table(options.repeats),
        gpu_table(options.gpu_frames, options.repeats),
    ):
        print()
        print("\n".join(section))


if __name__ == "__main__":
    main()
