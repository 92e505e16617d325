"""Load any digitlab model for inference and read digits with it.

A model is a run folder, a .keras file or an .onnx file (which runs on ONNX Runtime alone:
serving it needs no TensorFlow). Each answers `probabilities(images)` for float32
(N, 28, 28, 1) images in [0, 1], and carries its serving calibration: the temperature and
the decline threshold chosen on the validation split (serving.json, or ONNX metadata).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import DigitlabError
from .files import read_json

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
    return path / "model.keras" if path.is_dir() else path


class Model(Protocol):
    path: Path
    info: dict  # temperature, threshold, and what else is known: name, metrics, command

    def probabilities(self, images: np.ndarray) -> np.ndarray: ...


class KerasModel:
    def __init__(self, path: Path, model=None):
        """`model`: the Keras model at `path` when the caller has loaded it already."""
        from .models import load

        self.path = path
        self.model = model if model is not None else load(path)
        check_output(path, [tuple(o.shape) for o in self.model.outputs])  # Keras adapts (28, 28) inputs itself
        self.info = model_info(path)
        check_calibration(path, self.info)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        if len(images) <= KERAS_BATCH:  # a direct call skips predict()'s per-call set-up
            return np.asarray(self.model(images, training=False))
        return self.model.predict(images, batch_size=KERAS_BATCH, verbose=0)


class OnnxModel:
    def __init__(self, path: Path, threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads  # 0: one per core
        self.path = path
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own untyped errors for unreadable models
            raise DigitlabError(f"cannot load ONNX model {path}: {str(e).splitlines()[0]}") from None
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
    folder = keras_path.parent
    info = {**UNCALIBRATED, "name": folder.name}
    if (folder / "serving.json").is_file():
        info.update(read_json(folder / "serving.json"))
    if (folder / "metrics.json").is_file():
        metrics = read_json(folder / "metrics.json")
        info["metrics"] = {k: metrics[k] for k in ("test_accuracy", "test_errors", "test_size") if k in metrics}
    if (folder / "run.json").is_file():
        from .runs import reproduce

        info["command"] = reproduce(read_json(folder / "run.json"))
    return info


def load(path: str | Path | None = None) -> Model:
    """A run folder (its model.keras), a .keras file or an .onnx file; None: the shipped default."""
    path = model_file(path) if path is not None else DEFAULT_MODEL
    if not path.is_file():
        raise DigitlabError(f"no model at {path}; give a run folder, a .keras or an .onnx file")
    if path.suffix == ".onnx":
        return OnnxModel(path)
    if path.suffix == ".keras":
        return KerasModel(path)
    raise DigitlabError(f"{path} is neither .keras nor .onnx; export it with `digitlab export`")


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
