"""digitlab's own model files, ready for inference: a run folder's model.keras or an exported
.onnx file (which runs on ONNX Runtime alone: serving it needs no TensorFlow).

Each model answers `probabilities(images)` for float32 (N, 28, 28, 1) images in [0, 1], and
carries `info`: its serving calibration (calibration.py; serving.json, or ONNX metadata) and
what else is known of it. Models trained elsewhere are adapted by foreign.py into these classes.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from digitlab.errors import DigitlabError
from digitlab.io import calibration

DEFAULT_MODEL = Path(__file__).parents[1] / "assets" / "default.onnx"
META_PREFIX = "digitlab."  # ONNX metadata keys: digitlab.temperature, digitlab.threshold, ...

KERAS_BATCH = 512  # Keras' per-call overhead favours large batches
ONNX_BATCH = 64  # ONNX Runtime is fastest while a chunk's activations fit in cache (measured: 64 > 512 > 2000)


def model_file(path: str | Path) -> Path:
    """A run folder means its model.keras; a file is itself."""
    path = Path(path)
    from digitlab.training.runs import Run

    return Run.model_in(path) if path.is_dir() else path


class Model(Protocol):
    path: Path
    info: dict  # temperature, threshold, and what else is known: name, metrics, command

    def probabilities(self, images: np.ndarray) -> np.ndarray: ...


class KerasModel:
    def __init__(self, path: Path, model=None, info: dict | None = None):
        """`model`: the Keras model at `path` when the caller has loaded it already; `info`: its
        calibration and card when it is not a run folder's (a foreign model's)."""
        from digitlab.nn.models import load

        self.path = path
        self.model = model if model is not None else load(path)
        check_output(path, [tuple(o.shape) for o in self.model.outputs])  # Keras adapts (28, 28) inputs itself
        self.info = info if info is not None else model_info(path)
        calibration.check(path, self.info)
        # The server calls from several threads; Keras' predict() is not safe to enter twice at once.
        self.lock = threading.Lock()

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        with self.lock:
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
        meta = {}
        for key, value in self.session.get_modelmeta().custom_metadata_map.items():
            if key.startswith(META_PREFIX):
                try:
                    meta[key[len(META_PREFIX) :]] = json.loads(value)
                except json.JSONDecodeError:
                    raise DigitlabError(
                        f"{path}: metadata {key} is not JSON ({value[:40]!r}); re-export the model"
                    ) from None
        note = f"{path} carries no calibration; export it from an evaluated run"
        self.info = {"name": path.stem, **calibration.served(meta, note)}
        calibration.check(path, self.info)

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


def fits(shapes: list, expected: tuple) -> bool:
    """One tensor of the expected shape; dimensions may be symbolic (None or a name)."""
    return (
        len(shapes) == 1
        and len(shapes[0]) == len(expected)
        and all(e is None or not isinstance(d, int) or d == e for d, e in zip(shapes[0], expected, strict=True))
    )


def check_input(path: Path, inputs: list) -> None:
    if not fits(inputs, (None, 28, 28, 1)):
        raise DigitlabError(f"{path} is not a digit model: it takes {inputs}, not one (N, 28, 28, 1) image batch")


def check_output(path: Path, outputs: list) -> None:
    if not fits(outputs, (None, 10)):
        raise DigitlabError(f"{path} is not a digit model: it gives {outputs}, not (N, 10) probabilities")


def model_info(keras_path: Path) -> dict:
    """What a run folder knows about its model: calibration, metrics, the command that made it."""
    from digitlab.training.runs import Run

    folder = keras_path.parent
    note = f"{folder} is not calibrated; `digitlab evaluate {folder}` fits its calibration on validation"
    if not Run.is_run(folder):  # a bare .keras file: no calibration to read
        return {"name": folder.name, **calibration.served(None, note)}
    run = Run.open(folder)
    info = {"name": folder.name, **calibration.served(run.read_serving(), note)}
    metrics = run.read_metrics() or {}
    info["metrics"] = {k: metrics[k] for k in ("test_accuracy", "test_errors", "test_size") if k in metrics}
    info["command"] = run.reproduce()
    return info
