"""benchmarks/learning.py end to end at toy sizes: it trains, probes, continues with stage 3 and writes its tables;
`--probe` scores a finished run's checkpoint again. Its table writers on a fixed input."""

import json
import runpy
import sys
from pathlib import Path

import pytest

from any2bokeh.stages.probes import PROBES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_learning_benchmark_writes_its_tables(tmp_path, monkeypatch):
    out = tmp_path / "learning"
    overrides = [
        "trainer.max_steps=2",
        "trainer.val_check_interval=1",
        "trainer.limit_val_batches=1",
        "data.height=32",
        "data.width=32",
        "data.val_size=1",
        "data.test_size=1",
        "callbacks.conditioning_probes.max_batches=1",
    ]
    monkeypatch.setattr(
        sys,
        "argv",
        ["learning.py", *overrides, "model.key_mask=any,coverage", "--stage3-steps", "1", "--out", str(out)],
    )
    runpy.run_path(str(ROOT / "benchmarks" / "learning.py"), run_name="__main__")

    results = json.loads((out / "learning.json").read_text())
    assert [r["overrides"][-1] for r in results] == ["model.key_mask=any", "model.key_mask=coverage"]
    for result in results:
        assert result["steps"] == 2
        assert set(result["latent_mse"]) == set(PROBES)
        assert [point["step"] for point in result["curve"]] == [1, 2]
        assert set(result["pixels"]) == {"psnr", "ssim", "psnr_input", "ssim_input"}
        assert set(result["gates"]) == {"gate_attn", "gate_ff"}
        assert set(result["ceiling"]) == {"wrong_focus", "k_half", "k_double"}
    table = (out / "learning.md").read_text()
    assert table.count("model.key_mask=coverage") == 3  # one result row, two curve rows

    # --probe: the coverage run's checkpoint scored again without training gives that run's figures
    checkpoint = next((out / "runs").glob("*coverage/stage1/checkpoints/last.ckpt"))
    again = tmp_path / "again"
    monkeypatch.setattr(
        sys, "argv", ["learning.py", *overrides, "--probe", str(checkpoint), "--stage3-steps", "0", "--out", str(again)]
    )
    runpy.run_path(str(ROOT / "benchmarks" / "learning.py"), run_name="__main__")
    probed = json.loads((again / "learning.json").read_text())[0]
    assert probed["steps"] == 2 and probed["curve"] == []
    assert probed["latent_mse"] == pytest.approx(results[1]["latent_mse"], rel=1e-5)
    assert probed["gates"] == pytest.approx(results[1]["gates"], rel=1e-6)


def test_learning_benchmark_rejects_a_missing_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["learning.py", "--probe", str(tmp_path / "none.ckpt"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="no such checkpoint"):
        runpy.run_path(str(ROOT / "benchmarks" / "learning.py"), run_name="__main__")


# two runs as `run` reports them: one with a stage-3 result and a validation curve, one without either
RESULTS = [
    {
        "overrides": ["model.key_mask=coverage"],
        "steps": 300,
        "minutes": 12.34,
        "latent_mse": {
            "true": 0.01,
            "identity": 0.04,
            "wrong_focus": 0.0115,
            "k_half": 0.0105,
            "k_double": 0.011,
            "one_region": 0.0102,
            "no_condition": 0.012,
        },
        "ceiling": {"wrong_focus": 0.25, "k_half": 0.125, "k_double": 0.5},
        "gates": {"gate_attn": 0.12344, "gate_ff": -0.5},
        "pixels": {"psnr": 30.126, "psnr_input": 25.5, "ssim": 0.91234, "ssim_input": 0.8},
        "curve": [
            {
                "step": 100,
                "true_over_identity": 0.5,
                "wrong_focus": 0.1,
                "k_half": -0.025,
                "k_double": 0.0,
                "one_region": 0.3,
                "no_condition": 1.0,
            },
            {
                "step": 200,
                "true_over_identity": 0.4567,
                "wrong_focus": 0.2,
                "k_half": 0.05,
                "k_double": 0.07,
                "one_region": 0.0,
                "no_condition": 2.0,
            },
        ],
    },
    {
        "overrides": [],
        "steps": 2,
        "minutes": 0.0,
        "latent_mse": {
            "true": 0.02,
            "identity": 0.02,
            "wrong_focus": 0.02,
            "k_half": 0.01,
            "k_double": 0.03,
            "one_region": 0.02,
            "no_condition": 0.02,
        },
        "ceiling": {"wrong_focus": 0.0, "k_half": -0.01, "k_double": 0.0},
        "gates": {"gate_attn": 0.0, "gate_ff": 0.0},
        "curve": [],
    },
]
DELTA_HEADS = "wrong_focus Δ | k_half Δ | k_double Δ | one_region Δ | no_condition Δ"


def test_learning_benchmark_tables_of_fixed_results():
    learning = runpy.run_path(str(ROOT / "benchmarks" / "learning.py"))  # not as __main__: nothing runs
    assert learning["table"](RESULTS) == "\n".join(
        [
            f"| run | steps | min | MSE true | MSE identity | true / identity | {DELTA_HEADS} | ceiling d_f / K × ½ / K × 2 | "
            "gate attn | gate ff | stage 3 PSNR (input) | stage 3 SSIM (input) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            "| model.key_mask=coverage | 300 | 12.3 | 0.010000 | 0.040000 | 0.250 | +15.0 % | +5.0 % | +10.0 % | +2.0 % | "
            "+20.0 % | +25.0 % / +12.5 % / +50.0 % | 0.1234 | -0.5000 | 30.13 (25.50) | 0.9123 (0.8000) |",
            "| defaults | 2 | 0.0 | 0.020000 | 0.020000 | 1.000 | +0.0 % | -50.0 % | +50.0 % | +0.0 % | +0.0 % | "
            "+0.0 % / -1.0 % / +0.0 % | 0.0000 | 0.0000 | – | – |",
        ]
    )
    assert learning["curve_table"](RESULTS) == "\n".join(
        [
            f"| run | step | true / identity | {DELTA_HEADS} |",
            "|---|---|---|---|---|---|---|---|",
            "| model.key_mask=coverage | 100 | 0.500 | +10.0 % | -2.5 % | +0.0 % | +30.0 % | +100.0 % |",
            "| model.key_mask=coverage | 200 | 0.457 | +20.0 % | +5.0 % | +7.0 % | +0.0 % | +200.0 % |",
        ]
    )
    # a run with no validation curve has no rows: only the header
    assert learning["curve_table"](RESULTS[1:]) == "\n".join(
        [
            f"| run | step | true / identity | {DELTA_HEADS} |",
            "|---|---|---|---|---|---|---|---|",
        ]
    )
