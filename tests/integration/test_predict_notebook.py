from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.mark.slow
def test_refocus_notebook_runs_and_shows_its_figures():
    notebook = nbformat.read(NOTEBOOKS / "refocus.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 4  # the tracked d_f, the rack focus curve, its rendered frames, the window weights
    text = "".join(o.get("text", "") for o in outputs)
    difference = float(text.split("largest difference ")[1].split()[0])
    assert difference < 0.05  # the tracked subject's d_f follows the target's true d_f
    assert "the weights of every frame sum to 1: True" in text
