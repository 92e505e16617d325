"""digitlab's own model files, ready for inference: a run folder's model.keras or an exported
.onnx file (which runs on ONNX Runtime alone: serving it needs no TensorFlow).

Each model answers `probabilities(images)` for float32 (N, 28, 28, 1) images in [0, 1], and
carries `info`: its serving calibration (nn/calibration.py; serving.json, or ONNX metadata) and
what else is known of it. Models trained elsewhere are adapted by foreign.py into these classes.

Model files are untrusted: their JSON is read within bounds (files.parse_json), a .keras file is
checked to be one before Keras opens it, and an ONNX graph runs under a memory cap and a deadline
(runtime.py).
"""

from __future__ import annotations

import threading
import zipfile
import zlib
from pathlib import Path
from typing import Protocol

import numpy as np

from digitlab.errors import DigitlabError
from digitlab.files import JSON_CHARS, UnreadableJSON, parse_json
from digitlab.io.runtime import onnx_session, run_onnx
from digitlab.nn import calibration

DEFAULT_MODEL = Path(__file__).parents[1] / "assets" / "default.onnx"
META_PREFIX = "digitlab."  # ONNX metadata keys: digitlab.temperature, digitlab.threshold, ...

# Calls compiled once per image shape: predict() traces anew and builds a dataset per call, an
# eager call pays Python per layer (felt by a number's many small batches). 512 as fast as 1024.
KERAS_BATCH = 512
ONNX_BATCH = 64  # ONNX Runtime is fastest while a chunk's activations fit in cache (measured: 64 > 512 > 2000)
METADATA_CHARS = 2**20  # one ONNX metadata value: digitlab's are calibration, metrics, a command: < 10 KB


def model_file(path: str | Path) -> Path:
    """A run folder means its model.keras; a file is itself."""
    path = Path(path)
    from digitlab.training.runs import Run

    return Run.model_in(path) if path.is_dir() else path


class Model(Protocol):
    path: Path
    info: dict  # temperature, threshold, and what else is known: name, metrics, command

    def probabilities(self, images: np.ndarray) -> np.ndarray: ...


def keras_config(path: Path) -> dict:
    """The architecture in a .keras file (a zip archive), read without Keras and within bounds:
    a file that is no Keras model (a pickle renamed, a truncated copy) or whose config is hostile
    is refused in one line, before Keras (whose own message would be "File not found") opens it."""
    fix = "give a model saved by Keras (model.save('model.keras')), or train the run again"
    try:
        with zipfile.ZipFile(path) as archive:
            config = archive.getinfo("config.json")
            if config.file_size > JSON_CHARS:  # before reading: a zip bomb stays compressed
                raise UnreadableJSON(f"its config.json holds {config.file_size:,} bytes")
            found = parse_json(archive.read(config), "its config.json")
        if not isinstance(found, dict):
            raise UnreadableJSON("its config.json is not a JSON object")
    except KeyError:
        reason = "it has no config.json"
    except UnreadableJSON as e:
        reason = str(e)
    except OSError as e:
        reason = e.strerror or str(e)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError):
        reason = "a .keras file is a zip archive; this is not one, or a damaged one"
    else:
        return found
    raise DigitlabError(f"cannot load Keras model {path}: not a Keras model file ({reason}); {fix}")


def load_own_keras(path: Path):
    """A .keras file digitlab wrote (a run's), checked by keras_config() before Keras loads it."""
    from digitlab.nn.models import load

    keras_config(path)
    return load(path)


class KerasModel:
    def __init__(self, path: Path, model=None, info: dict | None = None):
        """`model`: the Keras model at `path` when the caller has loaded it already; `info`: its
        calibration and card when it is not a run folder's (a foreign model's)."""
        self.path = path
        self.model = model if model is not None else load_own_keras(path)
        check_output(path, [tuple(o.shape) for o in self.model.outputs])  # Keras adapts (28, 28) inputs itself
        self.info = info if info is not None else model_info(path)
        calibration.check(path, self.info)
        # The server calls from several threads; a Keras model is not safe to enter twice at once.
        self.lock = threading.Lock()
        self._calls: dict = {}  # (image shape, dtype) -> the model's call, compiled

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        with self.lock:
            key = images.shape[1:], images.dtype
            if key not in self._calls:
                from digitlab.nn.backend import tf

                spec = tf.TensorSpec((None, *key[0]), key[1])
                self._calls[key] = tf.function(lambda x: self.model(x, training=False), input_signature=[spec])
            starts = range(0, max(len(images), 1), KERAS_BATCH)  # an empty batch still gets its (0, 10)
            return np.concatenate([np.asarray(self._calls[key](images[i : i + KERAS_BATCH])) for i in starts])


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
                    meta[key[len(META_PREFIX) :]] = parse_json(value, f"{path}: metadata {key[:40]}", METADATA_CHARS)
                except UnreadableJSON as e:
                    raise DigitlabError(f"{e}; re-export the model with `digitlab export`") from None
        note = f"{path} carries no calibration; export it from an evaluated run"
        self.info = {"name": path.stem, **calibration.served(meta, note)}
        calibration.check(path, self.info)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.float32)
        step = ONNX_BATCH
        chunks = [
            run_onnx(self.session, self.path, {self.input: images[i : i + step]}) for i in range(0, len(images), step)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, 10), np.float32)


ONNX_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


class AdaptedOnnxModel:
    """A foreign ONNX model behind OnnxModel's interface: x * scale + offset, its layout, its logits softmaxed."""

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
            chunks.append(run_onnx(self.session, self.path, {self.input: chunk})[: len(images) - i])
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, 10), np.float32)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        out = self.raw(np.asarray(images, np.float32) * self.scale + self.offset)
        if self.logits:  # softmax, in numpy: a serving process imports no SciPy
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out = (out / out.sum(axis=1, keepdims=True)).astype(np.float32)
        return out


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
