"""Any model digitlab reads, by its path: digitlab's own (native.py) or one trained elsewhere
(foreign.py), behind one interface (native.Model)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from digitlab.errors import DigitlabError, install_hint
from digitlab.io import foreign
from digitlab.io.native import DEFAULT_MODEL, KerasModel, Model, OnnxModel, model_file


def load(
    path: str | Path | None = None, pixels: str | None = None, data_dir: str | Path | None = None, threads: int = 0
) -> Model:
    """A run folder (its model.keras), a .keras file or an .onnx file; None: the shipped default.
    A model trained elsewhere is adapted (foreign.py): `pixels` says its pixel scale, else it is
    detected on MNIST validation digits found in `data_dir` (or the usual places). Where Keras is
    not installed (a [serve] install), a run folder is read from its ONNX export, model.onnx.
    `threads`: ONNX Runtime's threads for digitlab's own ONNX models (0: one per core)."""
    if path is not None and foreign.is_foreign(path):
        return foreign.load(path, pixels, data_dir)
    if pixels is not None:
        raise DigitlabError(
            f"--pixels is for models trained elsewhere; {path or 'the shipped model'} is digitlab's own"
        )
    if path is not None and Path(path).is_dir() and not _keras_installed():
        return _run_export(Path(path), threads)
    path = model_file(path) if path is not None else DEFAULT_MODEL
    if not path.is_file():
        raise DigitlabError(
            f"no model at {path}; give a run folder, a .keras, .h5 or .onnx file or a SavedModel folder"
        )
    if path.suffix == ".onnx":
        return OnnxModel(path, threads)
    if path.suffix == ".keras":
        return KerasModel(path)
    raise DigitlabError(
        f"{path} is not a model digitlab reads; give a .keras, .h5 or .onnx file or a SavedModel folder"
    )


def _keras_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("keras", "tensorflow"))


def _run_export(folder: Path, threads: int = 0) -> OnnxModel:
    """A run folder's model.onnx (`digitlab export` writes it beside model.keras, calibration in it)."""
    onnx = model_file(folder).with_suffix(".onnx")
    if onnx.is_file():
        return OnnxModel(onnx, threads)
    if not model_file(folder).is_file():
        raise DigitlabError(f"no model in {folder}; give a run folder, a .keras, .h5 or .onnx file or a SavedModel")
    raise DigitlabError(
        f"{folder} has no ONNX export (model.onnx), and reading its model.keras needs Keras and TensorFlow: "
        f"run `digitlab export {folder}` where digitlab's [train] extra is installed, or install it here: "
        f"{install_hint('train')}"
    )
