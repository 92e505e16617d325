"""The example notebook runs top to bottom on a small real subset, every step of the workflow
doing what its text says: train, compare, report, read a drawn digit, export, ask the server."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import nbformat
from conftest import ROOT
from nbclient import NotebookClient


def text_of(cell) -> str:
    """What a cell printed and displayed as text or Markdown."""
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(output.get("data", {}).get("text/markdown", ""))
    return "".join(parts)


def test_walkthrough_notebook_executes(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITLAB_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DIGITLAB_NOTEBOOK_SUBSET", "3000")
    monkeypatch.setenv("DIGITLAB_NOTEBOOK_EPOCHS", "1")  # `fast`: ~94% after one pass over 3,000 images
    monkeypatch.setenv("DIGITLAB_NOTEBOOK_SEEDS", "1")
    notebook = nbformat.read(ROOT / "examples" / "walkthrough.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    outputs = [o for cell in code for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    # No warnings: compare's progress bar asks for ipywidgets in Jupyter unless told it is text.
    assert not [o["text"] for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 6  # samples, curves, confusion, errors, leaderboard, the drawing beside what models see
    printed = "".join(text_of(cell) for cell in code)

    # Compare: one row per model in the leaderboard it wrote and showed.
    with (tmp_path / "runs" / "compare" / "leaderboard.csv").open() as f:
        assert sorted(row["model"] for row in csv.DictReader(f)) == ["fast", "mlp"]
    assert "`mlp`" in printed and "`fast`" in printed

    # The report's summary table is shown, with the test accuracy the run measured.
    assert "| test accuracy |" in printed

    # The drawn 7: the shipped model reads it; the exported model and the server agree with each other.
    assert "shipped model reads 7" in printed
    difference = float(re.search(r"ONNX Runtime and Keras differ by at most (\S+)\n", printed).group(1))
    assert difference < 1e-4
    local = re.search(r"ONNX model reads the drawing as (\w+)", printed).group(1)
    served = re.search(r"the server \(.*, onnx\) reads the drawing as (\w+)", printed).group(1)
    assert served == local

    last = text_of(code[-1])
    accuracy = float(last.split("test accuracy ")[1].split("%")[0])
    assert accuracy > 85.0
    assert list(Path(tmp_path, "runs").glob("fast-*/model.onnx"))
