"""The example notebook runs top to bottom on a small real subset."""

from pathlib import Path

import nbformat
from conftest import ROOT
from nbclient import NotebookClient


def test_walkthrough_notebook_executes(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITLAB_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DIGITLAB_NOTEBOOK_SUBSET", "3000")
    monkeypatch.setenv("DIGITLAB_NOTEBOOK_EPOCHS", "2")
    notebook = nbformat.read(ROOT / "examples" / "walkthrough.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # samples, curves, confusion, errors
    last = "".join(o.get("text", "") for o in notebook.cells[-1].outputs)
    accuracy = float(last.split("test accuracy ")[1].split("%")[0])
    assert accuracy > 85.0
    assert (Path(tmp_path) / "runs").is_dir()
