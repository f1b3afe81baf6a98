"""benchmarks/learning.py end to end at toy sizes: it trains, probes, continues with stage 3 and writes its tables;
`--probe` scores a finished run's checkpoint again."""

import json
import runpy
import sys
from pathlib import Path

import pytest

from any2bokeh.stages.probes import PROBES

ROOT = Path(__file__).resolve().parents[2]


def test_learning_benchmark_writes_its_tables(tmp_path, monkeypatch):
    out = tmp_path / "learning"
    overrides = [
        "trainer.max_steps=2", "trainer.val_check_interval=1", "trainer.limit_val_batches=1",
        "data.height=32", "data.width=32", "data.val_size=1", "data.test_size=1",
        "callbacks.conditioning_probes.max_batches=1",
    ]
    monkeypatch.setattr(sys, "argv", ["learning.py", *overrides, "model.key_mask=any,coverage",
                                      "--stage3-steps", "1", "--out", str(out)])
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
    monkeypatch.setattr(sys, "argv", ["learning.py", *overrides, "--probe", str(checkpoint),
                                      "--stage3-steps", "0", "--out", str(again)])
    runpy.run_path(str(ROOT / "benchmarks" / "learning.py"), run_name="__main__")
    probed = json.loads((again / "learning.json").read_text())[0]
    assert probed["steps"] == 2 and probed["curve"] == []
    assert probed["latent_mse"] == pytest.approx(results[1]["latent_mse"], rel=1e-5)
    assert probed["gates"] == pytest.approx(results[1]["gates"], rel=1e-6)


def test_learning_benchmark_rejects_a_missing_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["learning.py", "--probe", str(tmp_path / "none.ckpt"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="no such checkpoint"):
        runpy.run_path(str(ROOT / "benchmarks" / "learning.py"), run_name="__main__")
