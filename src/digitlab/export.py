"""Export a trained run for serving: ONNX (runs on ONNX Runtime, no TensorFlow) or SavedModel.

Every ONNX export is checked against Keras on validation images before it is kept.
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


def export(
    source: str | Path, fmt: str = "onnx", out: str | Path | None = None, check_images: np.ndarray | None = None
) -> Path:
    """Write `source`'s model (a run folder or a .keras file) as `fmt`; return the new path."""
    if fmt not in FORMATS:
        raise DigitlabError(f"unknown format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    keras_path = model_file(source)
    if not keras_path.is_file():
        raise DigitlabError(f"no model at {keras_path}; give a run folder or a .keras file")
    out = Path(out) if out else keras_path.with_suffix(".onnx" if fmt == "onnx" else "")
    if fmt == "savedmodel":
        out = out.with_name(out.name if out.suffix == "" else out.stem)

    from .backend import tf
    from .models import load

    model = load(keras_path)
    signature = [tf.TensorSpec((None, 28, 28, 1), tf.float32, name=INPUT_NAME)]
    if fmt == "savedmodel":
        model.export(str(out), format="tf_saved_model", verbose=False, input_signature=signature)
        return out
    info = model_info(keras_path)
    write_atomic(out, lambda tmp: _export_onnx(model, tmp, signature, info))
    if check_images is None:
        check_images = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    difference = max_difference(model, out, check_images)
    if difference > TOLERANCE:
        out.unlink()
        raise DigitlabError(f"the ONNX export differs from Keras by {difference:.2e} (> {TOLERANCE}); not kept")
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
