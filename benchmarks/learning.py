"""Does the network learn bokeh from its conditioning? Train, then probe it on held-out clips.

    python benchmarks/learning.py                                   # experiment=learn_cpu, one run
    python benchmarks/learning.py module.optimizer.lr=1e-4,3e-4 trainer.max_steps=300,600   # a sweep
    python benchmarks/learning.py model.key_mask=any,coverage --stage3-steps 0

Each run trains stage 1 with `experiment=learn_cpu` and the given Hydra overrides (a comma list sweeps,
as `-m` does: every combination is a run), then scores the held-out test clips with
`any2bokeh.stages.probes`: the latent MSE with the true conditioning, with the input copied
(identity) and with one signal altered (d_f -> 1 - d_f, K x 0.5, K x 2, one MPI region, zeroed MPI
condition latents), and beside d_f -> 1 - d_f, K x 0.5 and K x 2 their ceiling: the rise a model that followed
d_f or K exactly would show, from the ground truth rendered at 1 - d_f, K x 0.5 and K x 2 (`ceilings`). With `--stage3-steps N > 0`
it continues with N steps of stage 3 (the decoder with encoder skips) and reports PSNR/SSIM of the rendered
frames beside those of the all-in-focus input. `--probe CKPT` skips the training and scores a finished run's
checkpoint instead (on more test clips, say: `data.test_size=64`).
The table (Markdown) and the figures (JSON) go to `--out`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from any2bokeh.callbacks import ConditioningProbes
from any2bokeh.stages.probes import ceilings, conditioning_probes, gate_strengths, pixel_scores
from any2bokeh.training import compose_train_config, train
from any2bokeh.utils.threads import torch_threads

ROOT = Path(__file__).resolve().parents[1]
DELTAS = ("wrong_focus", "k_half", "k_double", "one_region", "no_condition")
#: the probes with a ceiling, and how `rendered_batches` renders their ground truth
CEILINGS = {"wrong_focus": {"flip_focus": True}, "k_half": {"k_scale": 0.5}, "k_double": {"k_scale": 2.0}}


def expand(overrides: list[str]) -> list[list[str]]:
    """Every combination of comma-separated override values (Hydra's basic sweep), in order."""
    choices = []
    for override in overrides:
        key, sep, values = override.partition("=")
        if not sep:
            raise SystemExit(f"learning.py: override {override!r} is not key=value")
        choices.append([f"{key}={value}" for value in values.split(",")])
    return [list(combo) for combo in itertools.product(*choices)]


def run(overrides: list[str], out: Path, stage3_steps: int, probe: Path | None = None) -> dict:
    """Train stage 1 (and stage 3) with `overrides` and probe the result; with `probe`, only score that checkpoint."""
    # a folder name Hydra can take back in an override (init_from=...): no '=', '/' or ','
    name = "_".join(o.translate(str.maketrans("=/,", "---")) for o in overrides) or "default"
    run_dir = out / "runs" / name
    loaded = [f"init_from={probe}", "train=false"] if probe else []
    cfg = compose_train_config(
        ROOT / "conf", ["experiment=learn_cpu", *overrides, *loaded], output_dir=run_dir / "stage1"
    )
    start = time.perf_counter()
    metrics, objects = train(cfg)
    minutes = (time.perf_counter() - start) / 60
    steps = int(objects["trainer"].global_step)
    if probe:
        minutes, steps = 0.0, int(torch.load(probe, map_location="cpu", weights_only=False)["global_step"])
    net = objects["model"].net.eval()
    datamodule = objects["datamodule"]
    with torch_threads(cfg.get("cpu_threads")):
        probes = conditioning_probes(net, datamodule.rendered_batches("test", net.device))
        # what wrong_focus, k_half and k_double could show at most: the ground truth rendered as each alters it
        altered = {name: datamodule.rendered_batches("test", net.device, **how) for name, how in CEILINGS.items()}
        rises = ceilings(net, datamodule.rendered_batches("test", net.device), altered)
    curves = [callback.history for callback in objects["callbacks"] if isinstance(callback, ConditioningProbes)]
    result = {
        "overrides": overrides,
        "steps": steps,
        "minutes": minutes,
        "latent_mse": probes,
        "ceiling": rises,
        "gates": gate_strengths(net),
        "curve": curves[0] if curves else [],
        "cpu_threads": cfg.get("cpu_threads"),
    }
    if stage3_steps > 0:
        checkpoint = probe or run_dir / "stage1" / "checkpoints" / "last.ckpt"
        cfg3 = compose_train_config(
            ROOT / "conf",
            [
                "experiment=learn_cpu",
                *overrides,
                "stage=stage3",
                f"init_from={checkpoint}",
                f"trainer.max_steps={stage3_steps}",
                "data.num_frames=3",
            ],
            output_dir=run_dir / "stage3",
        )
        start = time.perf_counter()
        _, objects3 = train(cfg3)
        result["stage3_minutes"] = (time.perf_counter() - start) / 60
        net3 = objects3["model"].net.eval()
        result["pixels"] = pixel_scores(net3, objects3["datamodule"].rendered_batches("test", net3.device))
    return result


def table(results: list[dict]) -> str:
    head = (
        "| run | steps | min | MSE true | MSE identity | true / identity | "
        + " | ".join(f"{name} Δ" for name in DELTAS)
        + " | ceiling d_f / K × ½ / K × 2 | gate attn | gate ff | stage 3 PSNR (input) | stage 3 SSIM (input) |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        mse = r["latent_mse"]
        deltas = " | ".join(f"{100 * (mse[name] / mse['true'] - 1):+.1f} %" for name in DELTAS)
        pixels = r.get("pixels")
        stage3 = (
            f"{pixels['psnr']:.2f} ({pixels['psnr_input']:.2f}) | {pixels['ssim']:.4f} ({pixels['ssim_input']:.4f})"
            if pixels
            else "– | –"
        )
        ceiling = " / ".join(f"{100 * r['ceiling'][name]:+.1f} %" for name in CEILINGS)
        lines.append(
            f"| {' '.join(r['overrides']) or 'defaults'} | {r['steps']} | {r['minutes']:.1f} | {mse['true']:.6f} | "
            f"{mse['identity']:.6f} | {mse['true'] / mse['identity']:.3f} | {deltas} | {ceiling} | "
            f"{r['gates']['gate_attn']:.4f} | {r['gates']['gate_ff']:.4f} | {stage3} |"
        )
    return "\n".join(lines)


def curve_table(results: list[dict]) -> str:
    """The validation-time probes of each run, step by step (`ConditioningProbes`)."""
    head = "| run | step | true / identity | " + " | ".join(f"{name} Δ" for name in DELTAS) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        for point in r["curve"]:
            deltas = " | ".join(f"{100 * point[name]:+.1f} %" for name in DELTAS)
            lines.append(
                f"| {' '.join(r['overrides']) or 'defaults'} | {point['step']} | {point['true_over_identity']:.3f} | {deltas} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides on experiment=learn_cpu; a,b sweeps")
    parser.add_argument("--stage3-steps", type=int, default=100, help="stage-3 steps after stage 1 (0: none)")
    parser.add_argument(
        "--probe",
        type=Path,
        default=None,
        metavar="CKPT",
        help="score this stage-1 checkpoint (a run's last.ckpt) instead of training; the overrides still apply",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "logs" / "learning", help="output folder")
    args = parser.parse_args()
    if args.probe is not None and not args.probe.is_file():
        raise SystemExit(f"learning.py: --probe {args.probe}: no such checkpoint file")
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for overrides in expand(args.overrides):
        results.append(run(overrides, args.out, args.stage3_steps, args.probe))
        # written after every run, so a long sweep keeps what it finished
        (args.out / "learning.json").write_text(json.dumps(results, indent=2))
        (args.out / "learning.md").write_text(
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
            f"torch {torch.__version__}, training threads (cpu_threads): {results[0]['cpu_threads']}\n\n"
            f"Held-out test clips after training:\n\n{table(results)}\n\n"
            f"Validation clips during training:\n\n{curve_table(results)}\n"
        )
        print(table(results), flush=True)


if __name__ == "__main__":
    main()
