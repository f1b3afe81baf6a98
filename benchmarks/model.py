"""Size and cost of BokehUNet against the base SVD UNet.

    python benchmarks/model.py [--frames 1] [--repeats 20]

1. Parameters of the real SVD img2vid UNet config, built under FakeTensorMode (no weights, no memory).
2. GFLOPs per frame at 576x1024 (latents 72x128), counted with torch.utils.flop_counter under
   FakeTensorMode, for the base UNet and for BokehUNet (default and alternative MPI settings).
   Attention is counted too: torch's counter has no formula for the CPU SDPA kernel, so one is supplied.
3. Forward and forward+backward time of the tiny test-size model on this CPU, base vs BokehUNet.
4. On CUDA only: seconds per frame and peak memory at 576x1024 in bf16, base vs BokehUNet.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from datetime import datetime, timezone

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
        lines.append(f"  of which outside the attention kernels (torch's counter without an SDPA formula): "
                     f"{without_attention:,.1f}")
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
    ratio = [statistics.median(times["tiny BokehUNet", kind]) / statistics.median(times["base tiny UNet", kind])
             for kind in ("fwd", "fwd+bwd")]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=1, help="frames per call for the FLOP count")
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats (median)")
    parser.add_argument("--gpu-frames", type=int, default=8, help="frames per call on the GPU")
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads (1 keeps timings steady on a shared machine)"
    )
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    print(f"# {platform.node()} | {platform.processor() or platform.machine()} | {torch.get_num_threads()} threads "
          f"| torch {torch.__version__} | {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    for section in (real_config_table(options.frames), tiny_cpu_table(options.repeats),
                    gpu_table(options.gpu_frames, options.repeats)):
        print()
        print("\n".join(section))


if __name__ == "__main__":
    main()
