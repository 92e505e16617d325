"""Any model digitlab reads, by its path: digitlab's own (native.py) or one trained elsewhere
(foreign.py), behind one interface (native.Model)."""

from __future__ import annotations

from pathlib import Path

from digitlab.errors import DigitlabError
from digitlab.io import foreign
from digitlab.io.native import DEFAULT_MODEL, KerasModel, Model, OnnxModel, model_file


def load(path: str | Path | None = None, pixels: str | None = None, data_dir: str | Path | None = None) -> Model:
    """A run folder (its model.keras), a .keras file or an .onnx file; None: the shipped default.
    A model trained elsewhere is adapted (foreign.py): `pixels` says its pixel scale, else it is
    detected on MNIST validation digits found in `data_dir` (or the usual places)."""
    if path is not None and foreign.is_foreign(path):
        return foreign.load(path, pixels, data_dir)
    if pixels is not None:
        raise DigitlabError(
            f"--pixels is for models trained elsewhere; {path or 'the shipped model'} is digitlab's own"
        )
    path = model_file(path) if path is not None else DEFAULT_MODEL
    if not path.is_file():
        raise DigitlabError(
            f"no model at {path}; give a run folder, a .keras, .h5 or .onnx file or a SavedModel folder"
        )
    if path.suffix == ".onnx":
        return OnnxModel(path)
    if path.suffix == ".keras":
        return KerasModel(path)
    raise DigitlabError(
        f"{path} is not a model digitlab reads; give a .keras, .h5 or .onnx file or a SavedModel folder"
    )
