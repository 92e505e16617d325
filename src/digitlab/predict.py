"""Load any digitlab model for inference and read digits with it.

A model is a run folder, a .keras file or an .onnx file (which runs on ONNX Runtime alone:
serving it needs no TensorFlow); or a model trained elsewhere (.keras, .h5, SavedModel, .onnx),
adapted by foreign.py. Each answers `probabilities(images)` for float32
(N, 28, 28, 1) images in [0, 1], and carries its serving calibration: the temperature and
the decline threshold chosen on the validation split (serving.json, or ONNX metadata).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import DigitlabError

DEFAULT_MODEL = Path(__file__).parent / "assets" / "default.onnx"
META_PREFIX = "digitlab."  # ONNX metadata keys: digitlab.temperature, digitlab.threshold, ...
UNCALIBRATED = {"temperature": 1.0, "threshold": 0.5}  # for models digitlab did not evaluate

KERAS_BATCH = 512  # Keras' per-call overhead favours large batches
ONNX_BATCH = 64  # ONNX Runtime is fastest while a chunk's activations fit in cache (measured: 64 > 512 > 2000)


def scale_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): T > 1 softens overconfident probabilities, T < 1 sharpens them.
    Plain numpy, here on the serving side, so reading a digit loads nothing heavy for it."""
    logits = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def model_file(path: str | Path) -> Path:
    """A run folder means its model.keras; a file is itself."""
    path = Path(path)
    from .runs import Run

    return Run.model_in(path) if path.is_dir() else path


class Model(Protocol):
    path: Path
    info: dict  # temperature, threshold, and what else is known: name, metrics, command

    def probabilities(self, images: np.ndarray) -> np.ndarray: ...


class KerasModel:
    def __init__(self, path: Path, model=None, info: dict | None = None):
        """`model`: the Keras model at `path` when the caller has loaded it already; `info`: its
        calibration and card when it is not a run folder's (a foreign model's)."""
        from .models import load

        self.path = path
        self.model = model if model is not None else load(path)
        check_output(path, [tuple(o.shape) for o in self.model.outputs])  # Keras adapts (28, 28) inputs itself
        self.info = info if info is not None else model_info(path)
        check_calibration(path, self.info)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        if len(images) <= KERAS_BATCH:  # a direct call skips predict()'s per-call set-up
            return np.asarray(self.model(images, training=False))
        return self.model.predict(images, batch_size=KERAS_BATCH, verbose=0)


def onnx_session(path: Path, threads: int = 0):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads  # 0: one per core
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own untyped errors for unreadable models
        raise DigitlabError(f"cannot load ONNX model {path}: {str(e).splitlines()[0]}") from None


class OnnxModel:
    def __init__(self, path: Path, threads: int = 0):
        self.path = path
        self.session = onnx_session(path, threads)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        check_input(path, [i.shape for i in inputs])
        check_output(path, [o.shape for o in outputs])
        self.input = inputs[0].name
        meta = self.session.get_modelmeta().custom_metadata_map
        self.info = {**UNCALIBRATED, "name": path.stem}
        for key, value in meta.items():
            if key.startswith(META_PREFIX):
                try:
                    self.info[key[len(META_PREFIX) :]] = json.loads(value)
                except json.JSONDecodeError:
                    raise DigitlabError(
                        f"{path}: metadata {key} is not JSON ({value[:40]!r}); re-export the model"
                    ) from None
        check_calibration(path, self.info)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        step = ONNX_BATCH
        chunks = [self.session.run(None, {self.input: images[i : i + step]})[0] for i in range(0, len(images), step)]
        return np.concatenate(chunks) if chunks else np.zeros((0, 10), np.float32)


ONNX_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


class AdaptedOnnxModel:
    """An ONNX model trained elsewhere, behind OnnxModel's interface (foreign.py finds how):
    images are scaled (x * scale + offset), reshaped to its layout, its logits softmaxed."""

    def __init__(self, path: Path, session, layout: tuple, scale=1.0, offset=0.0, logits=False):
        self.path, self.session, self.layout = path, session, layout
        self.scale, self.offset, self.logits = scale, offset, logits
        spec = session.get_inputs()[0]
        self.input, self.dtype = spec.name, ONNX_TYPES[spec.type]
        batch = spec.shape[0]
        self.fixed = isinstance(batch, int) and batch > 0  # e.g. PyTorch exports traced with one image
        self.step = batch if self.fixed else ONNX_BATCH
        self.info: dict = {}

    def raw(self, images: np.ndarray) -> np.ndarray:
        """The model's own outputs for images already in its scale."""
        images = np.asarray(images).reshape(-1, *self.layout).astype(self.dtype)
        chunks = []
        for i in range(0, len(images), self.step):
            chunk = images[i : i + self.step]
            if self.fixed and len(chunk) < self.step:  # pad to its fixed batch, then drop the padding
                chunk = np.concatenate([chunk, np.zeros((self.step - len(chunk), *self.layout), self.dtype)])
            chunks.append(self.session.run(None, {self.input: chunk})[0][: len(images) - i])
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, 10), np.float32)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        from scipy.special import softmax

        out = self.raw(np.asarray(images, np.float32) * self.scale + self.offset)
        return softmax(out, axis=1).astype(np.float32) if self.logits else out


def _fits(shapes: list, expected: tuple) -> bool:
    """One tensor of the expected shape; dimensions may be symbolic (None or a name)."""
    return (
        len(shapes) == 1
        and len(shapes[0]) == len(expected)
        and all(e is None or not isinstance(d, int) or d == e for d, e in zip(shapes[0], expected, strict=True))
    )


def check_input(path: Path, inputs: list) -> None:
    if not _fits(inputs, (None, 28, 28, 1)):
        raise DigitlabError(f"{path} is not a digit model: it takes {inputs}, not one (N, 28, 28, 1) image batch")


def check_output(path: Path, outputs: list) -> None:
    if not _fits(outputs, (None, 10)):
        raise DigitlabError(f"{path} is not a digit model: it gives {outputs}, not (N, 10) probabilities")


def check_calibration(path: Path, info: dict) -> None:
    temperature, threshold = info.get("temperature"), info.get("threshold")
    if not isinstance(temperature, (int, float)) or not 0 < temperature < 1e3 or temperature != temperature:
        raise DigitlabError(
            f"{path}: temperature must be a positive number, got {temperature!r}; re-evaluate the model"
        )
    if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise DigitlabError(f"{path}: threshold must be a number in [0, 1], got {threshold!r}; re-evaluate the model")


def model_info(keras_path: Path) -> dict:
    """What a run folder knows about its model: calibration, metrics, the command that made it."""
    from .runs import Run

    folder = keras_path.parent
    info = {**UNCALIBRATED, "name": folder.name}
    if not Run.is_run(folder):  # a bare .keras file: no calibration to read
        return info
    run = Run.open(folder)
    info.update(run.read_serving() or {})
    metrics = run.read_metrics() or {}
    info["metrics"] = {k: metrics[k] for k in ("test_accuracy", "test_errors", "test_size") if k in metrics}
    info["command"] = run.reproduce()
    return info


def load(path: str | Path | None = None, pixels: str | None = None, data_dir: str | Path | None = None) -> Model:
    """A run folder (its model.keras), a .keras file or an .onnx file; None: the shipped default.
    A model trained elsewhere is adapted (foreign.py): `pixels` says its pixel scale, else it is
    detected on MNIST validation digits found in `data_dir` (or the usual places)."""
    from . import foreign

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


def read(model: Model, images: np.ndarray, top_k: int = 3, threshold: float | None = None) -> list[dict]:
    """One answer per (28, 28) image: the digit, or None with a reason when the calibrated
    confidence falls below the model's threshold (letters, scribbles, noise)."""
    threshold = model.info["threshold"] if threshold is None else threshold
    probs = scale_temperature(model.probabilities(images.reshape(-1, 28, 28, 1)), model.info["temperature"])
    answers = []
    for p in probs:
        order = np.argsort(-p)[:top_k]
        digit, confidence = int(order[0]), float(p[order[0]])
        answer = {
            "digit": digit,
            "confidence": round(confidence, 6),
            "probabilities": [round(float(v), 6) for v in p],
            "top_k": [{"digit": int(d), "probability": round(float(p[d]), 6)} for d in order],
        }
        if confidence < threshold:
            answer |= {
                "digit": None,
                "reason": f"does not look like a digit: confidence {confidence:.2f} is under "
                f"the threshold {threshold:.2f} (closest digit: {digit})",
            }
        answers.append(answer)
    return answers


def predict_image(model: Model, source, top_k: int = 3, number: bool = False) -> dict:
    """Read one image (path or bytes): a digit, or with `number` a left-to-right string."""
    from .preprocess import prepare, segment

    if not number:
        prepared = prepare(source)
        answer = {"digit": None, "confidence": None, "probabilities": None, "reason": prepared.reason}
        if prepared.reason is None:
            answer = read(model, prepared.image, top_k)[0]
        return answer | {"inverted": prepared.inverted, "image28": prepared.image}
    digits = segment(source)
    found = [d for d in digits if d.reason is None]
    threshold = model.info.get("number_threshold", model.info["threshold"])  # a digit by the user's word
    answers = read(model, np.stack([d.image for d in found]), top_k, threshold) if found else []
    per_digit = []
    for d in digits:
        per_digit.append(answers.pop(0) if d.reason is None else {"digit": None, "reason": d.reason})
        per_digit[-1]["box"] = d.boxes[0] if d.boxes else None
    reasons = [a["reason"] for a in per_digit if a["digit"] is None]
    text = None if reasons else "".join(str(a["digit"]) for a in per_digit)
    return {
        "number": text,
        "digits": per_digit,
        "reason": reasons[0] if reasons else None,
        "image28": np.concatenate([d.image for d in digits], axis=1),
    }
