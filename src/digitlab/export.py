"""Export a trained run for serving: ONNX (runs on ONNX Runtime, no TensorFlow) or SavedModel.

A model trained elsewhere (.keras, .h5, SavedModel) is exported adapted to digitlab's convention
(foreign.py), with its calibration when digitlab has fitted one. Every ONNX export is checked
against Keras on validation images before it is kept.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import DigitlabError
from .files import write_atomic
from .predict import META_PREFIX, model_file, model_info

FORMATS = ("onnx", "savedmodel")
INPUT_NAME = "image"  # (N, 28, 28, 1) float32 in [0, 1]; output: (N, 10) probabilities
TOLERANCE = 1e-5  # max |p_onnx - p_keras|
# A model trained elsewhere may take 0-255 pixels: its logits, and float32 rounding in them, are
# then up to 255 times larger (measured: 1.2e-5 for a one-epoch MLP).
FOREIGN_TOLERANCE = 1e-4


def export(
    source: str | Path,
    fmt: str = "onnx",
    out: str | Path | None = None,
    check_images: np.ndarray | None = None,
    pixels: str | None = None,
    data_dir: str | Path | None = None,
    notes: list[str] | None = None,
) -> Path:
    """Write `source`'s model (a run folder, a .keras file, or a model trained elsewhere) as
    `fmt`; return the new path. `pixels`, `data_dir`: as predict.load's, for a foreign model;
    `notes`: gets what the user should know about one (what was detected, its calibration)."""
    from . import foreign

    if fmt not in FORMATS:
        raise DigitlabError(f"unknown format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    source = Path(source)
    fmt_found = foreign.kind(source)
    if fmt_found == "onnx":
        raise DigitlabError(f"{source} is ONNX already; digitlab reads it as it is (`digitlab predict --model`)")
    keras_path = source if fmt_found else model_file(source)
    if not keras_path.exists():
        raise DigitlabError(f"no model at {keras_path}; give a run folder, a .keras or .h5 file or a SavedModel folder")
    out = Path(out) if out else keras_path.with_suffix(".onnx" if fmt == "onnx" else "")
    if fmt == "savedmodel":
        out = out.with_name(out.name if out.suffix == "" else out.stem)
    if out.resolve() == keras_path.resolve():
        raise DigitlabError(f"exporting {source} would overwrite it; choose another --out")

    from .backend import tf
    from .models import load

    if fmt_found:
        model, found = foreign.load_keras(source, pixels=pixels, data_dir=data_dir)
        info = foreign.serving_info(source, found)
        if notes is not None:
            calibrated = f"calibration carried from {foreign.serving_file(source)}"
            notes += [foreign.describe(source, found), info.get("note", calibrated)]
    elif pixels is not None:
        raise DigitlabError(f"--pixels is for models trained elsewhere; {source} is digitlab's own")
    else:
        model, info = load(keras_path), model_info(keras_path)
    signature = [tf.TensorSpec((None, 28, 28, 1), tf.float32, name=INPUT_NAME)]
    if fmt == "savedmodel":
        model.export(str(out), format="tf_saved_model", verbose=False, input_signature=signature)
        return out
    write_atomic(out, lambda tmp: _export_onnx(model, tmp, signature, info))
    if check_images is None:
        check_images = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    difference, tolerance = max_difference(model, out, check_images), FOREIGN_TOLERANCE if fmt_found else TOLERANCE
    if difference > tolerance:
        out.unlink()
        raise DigitlabError(f"the ONNX export differs from Keras by {difference:.2e} (> {tolerance}); not kept")
    return out


def _export_onnx(model, path: Path, signature, info: dict) -> None:
    """ONNX with the serving calibration and model card inside, so one file is the whole model."""
    import warnings

    import onnx

    with warnings.catch_warnings():  # Keras' tf2onnx shim trips numpy's np.object notice; not ours to fix
        warnings.simplefilter("ignore", FutureWarning)
        model.export(str(path), format="onnx", verbose=False, input_signature=signature)
    proto = onnx.load(str(path))
    for key, value in info.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, json.dumps(value)
    onnx.save(proto, str(path))


def max_difference(model, onnx_path: Path, images: np.ndarray) -> float:
    from .predict import OnnxModel

    expected = model.predict(images, batch_size=256, verbose=0)
    return float(np.abs(OnnxModel(onnx_path).probabilities(images) - expected).max())
