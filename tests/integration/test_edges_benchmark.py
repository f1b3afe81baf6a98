"""benchmarks/edges.py on DAVIS-layout clips the tests write: the matte keeps the annotated subject's edges."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.helpers.davis_files import write_davis

ROOT = Path(__file__).resolve().parents[2]


def test_on_davis_clips_the_matte_keeps_the_subjects_detail(tmp_path):
    davis, disparity = tmp_path / "DAVIS", tmp_path / "disparity"
    write_davis(davis, {"bear": 4, "car": 4})
    disparity.mkdir()
    for name in ("bear", "car"):
        depth = np.tile(np.linspace(0.0, 0.5, 128), (4, 96, 1))
        depth[:, 24:56, 34:66] = 1.0  # the square (object 1), its disparity a few pixels short of its outline
        np.save(disparity / f"{name}.npy", depth * 40)
    command = [sys.executable, "benchmarks/edges.py", "--davis", str(davis), "--disparity", str(disparity)]
    output = subprocess.run(
        [*command, "--frames", "3"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=300
    ).stdout
    rows = {tuple(cells[:2]): [float(v) for v in cells[2:]] for cells in _rows(output)}
    assert set(rows) == {(name, matte) for name in ("bear", "car", "mean") for matte in ("off", "on")}
    (vepi_off, subject_off, background_off), (vepi_on, subject_on, background_on) = (
        rows["mean", "off"],
        rows["mean", "on"],
    )
    # the wrong disparity at the outline blurs the subject's edge without the matte; with it the subject stays whole
    assert vepi_on > vepi_off and subject_on > 0.95 and subject_off < 0.5
    # the background is blurred as before
    assert abs(background_on - background_off) < 0.05 and background_on < 0.9


def _rows(table: str) -> list[list[str]]:
    lines = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| sequence")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
