"""Export a trained run for serving: ONNX (runs on ONNX Runtime, no TensorFlow) or SavedModel.

A model trained elsewhere (.keras, .h5, SavedModel) is exported adapted to digitlab's convention
(foreign.py), with its calibration when digitlab has fitted one. Every export, ONNX or SavedModel,
is read back and checked against the Keras model on MNIST validation digits before it is kept
(check()); where no MNIST is found, on uniform noise, and the check says so.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab.errors import DigitlabError
from digitlab.files import remove_stale, temp_folder, write_atomic
from digitlab.io.native import META_PREFIX, load_own_keras, model_file, model_info

FORMATS = ("onnx", "savedmodel")
INPUT_NAME = "image"  # (N, 28, 28, 1) float32 in [0, 1]; output: (N, 10) probabilities
TOLERANCE = 1e-5  # max |p_export - p_keras|
# A model trained elsewhere may take 0-255 pixels: its logits, and float32 rounding in them, are
# then up to 255 times larger (measured: 1.2e-5 for a one-epoch MLP).
FOREIGN_TOLERANCE = 1e-4
CHECK_DIGITS = 1000  # validation digits every export is checked on: a second or two
NAMES = {"onnx": "ONNX", "savedmodel": "SavedModel"}


@dataclass(frozen=True)
class Check:
    """How closely an export's probabilities follow the Keras model's it was exported from."""

    fmt: str
    difference: float  # the largest |p_export - p_keras| over the images
    tolerance: float
    images: int  # how many were compared
    on: str  # what they were: "MNIST validation digits", or noise and why

    @property
    def passed(self) -> bool:
        return self.difference <= self.tolerance

    def __str__(self) -> str:
        return (
            f"{NAMES[self.fmt]} export checked against Keras on {self.images:,} {self.on}: probabilities "
            f"differ by at most {self.difference:.1e} (tolerance {self.tolerance:g})"
        )


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
    `fmt`; return the new path. The export is read back and checked against the model on
    `check_images` (default: digits_to_check(data_dir)), and not kept if it differs (check()).
    `pixels`, `data_dir`: as predict.load's, for a foreign model; `notes`: gets what the user
    should know (what was detected in a foreign model, its calibration; what the check found)."""
    from digitlab.io import adapt, foreign

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
    remove_stale(out.parent)  # what an export killed mid-write left there

    from digitlab.nn.backend import tf

    if fmt_found:
        model, found = foreign.load_keras(source, pixels=pixels, data_dir=data_dir)
        info = foreign.serving_info(source, found)
        if notes is not None:
            calibrated = f"calibration carried from {foreign.serving_file(source)}"
            notes += [adapt.describe(source, found), info.get("note", calibrated)]
    elif pixels is not None:
        raise DigitlabError(f"--pixels is for models trained elsewhere; {source} is digitlab's own")
    else:
        model, info = load_own_keras(keras_path), model_info(keras_path)
    signature = [tf.TensorSpec((None, 28, 28, 1), tf.float32, name=INPUT_NAME)]
    if check_images is None:
        check_images, on = digits_to_check(data_dir)
    else:
        on = "given images"
    tolerance = FOREIGN_TOLERANCE if fmt_found else TOLERANCE
    checks: list[Check] = []

    def write(path: Path) -> None:  # then read it back and check it, before it takes out's place
        if fmt == "onnx":
            _export_onnx(model, path, signature, info)
        else:
            model.export(str(path), format="tf_saved_model", verbose=False, input_signature=signature)
        checks.append(check(model, path, fmt, check_images, on, tolerance))
        if not checks[-1].passed:
            result = checks[-1]
            raise DigitlabError(
                f"the {NAMES[fmt]} export differs from Keras by {result.difference:.2e} (> {tolerance}) "
                f"on {result.images:,} {on}; not kept"
            )

    (write_atomic if fmt == "onnx" else _write_folder)(out, write)
    if notes is not None:
        notes.append(str(checks[-1]))
    return out


def _write_folder(out: Path, write) -> None:
    """write_atomic for a folder: `write(path)` in a scratch folder beside `out`, then moved into
    place, so an export that fails its check leaves `out` as it was."""
    if out.exists() and not (out / "saved_model.pb").is_file():
        raise DigitlabError(f"{out} exists and is not a SavedModel; choose another --out")
    scratch = temp_folder(out)
    try:
        write(scratch / out.name)
        if out.exists():
            shutil.rmtree(out)
        (scratch / out.name).rename(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def digits_to_check(data_dir: str | Path | None = None) -> tuple[np.ndarray, str]:
    """CHECK_DIGITS MNIST validation digits, found where training finds them (`data_dir`,
    $DIGITLAB_DATA_DIR, the caches; never downloaded), and what they are. Without MNIST: uniform
    noise, which at least catches a broken graph, and why."""
    from digitlab.data.mnist import load_mnist

    try:
        return load_mnist(data_dir, download_missing=False).x_val[:CHECK_DIGITS], "MNIST validation digits"
    except DigitlabError as e:
        noise = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
        return noise, f"images of uniform noise, not digits ({e})"


def check(model, path: Path, fmt: str, images: np.ndarray, on: str = "images", tolerance: float = TOLERANCE) -> Check:
    """Read the export at `path` back (ONNX Runtime, or TensorFlow for a SavedModel) and compare its
    probabilities for `images` with `model`'s, the Keras model it was exported from."""
    expected = model.predict(images, batch_size=256, verbose=0)
    got = _onnx_probabilities(path, images) if fmt == "onnx" else _savedmodel_probabilities(path, images)
    return Check(fmt, float(np.abs(got - expected).max()), tolerance, len(images), on)


def _onnx_probabilities(path: Path, images: np.ndarray) -> np.ndarray:
    from digitlab.io.native import OnnxModel

    return OnnxModel(path).probabilities(images)


def _savedmodel_probabilities(path: Path, images: np.ndarray) -> np.ndarray:
    from digitlab.nn.backend import tf

    serve = tf.saved_model.load(str(path)).signatures["serving_default"]  # what TensorFlow Serving calls
    chunks = [serve(**{INPUT_NAME: tf.constant(images[i : i + 256], tf.float32)}) for i in range(0, len(images), 256)]
    return np.concatenate([next(iter(chunk.values())).numpy() for chunk in chunks])


def _export_onnx(model, path: Path, signature, info: dict) -> None:
    """ONNX with the serving calibration and model card inside, so one file is the whole model."""
    import onnx

    from digitlab.nn.backend import export_onnx

    export_onnx(model, path, signature)
    proto = onnx.load(str(path))
    for key, value in info.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, json.dumps(value)
    onnx.save(proto, str(path))
