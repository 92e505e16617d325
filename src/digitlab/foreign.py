"""Models digitlab did not train: load them safely and adapt them to digitlab's convention.

digitlab's convention: float32 (N, 28, 28, 1) images, pixels in [0, 1], white ink on black, in;
(N, 10) probabilities out. A foreign model is a .keras file outside a run folder, a legacy .h5,
a TensorFlow SavedModel folder, or an .onnx file without digitlab's metadata. Loading one finds:
  layout  its per-image input shape: (28, 28, 1), (28, 28), (784,) or (1, 28, 28)
  pixels  "1" ([0, 1]) or "255" ([0, 255]), detected on CHECK_DIGITS validation digits (see
          _detect), unless the caller says (also "standardized": PyTorch's (x - 0.1307) / 0.3081)
  logits  whether it gives scores, not probabilities (a softmax is then added)
No Python from the file runs: Keras files load in safe mode after any Lambda layer is refused;
a SavedModel runs as a TensorFlow graph.

API (x_val, y_val: validation digits as load_mnist gives them; None: found in `data_dir`, or not
needed when `pixels` is given):
  is_foreign(path) -> bool; kind(path) -> "keras" | "h5" | "savedmodel" | "onnx" | None
  load_keras(path, x_val=None, y_val=None, pixels=None, data_dir=None) -> (keras.Model, found)
      a new keras.Model, (N, 28, 28, 1) in [0, 1] -> (N, 10) probabilities, the foreign one inside
      Rescaling/Reshape/Softmax layers: evaluation, export and ensembles take it as their own. It
      saves as .keras and reloads in safe mode, except a SavedModel's (Keras will not reload a
      TFSMLayer safely): keep the folder's path instead.
  load_onnx(path, x_val=None, y_val=None, pixels=None, data_dir=None) -> (AdaptedOnnxModel, found)
      .probabilities(images) as predict.OnnxModel's; no TensorFlow
  found = {"format", "layout", "pixels", "pixels_detected", "logits", "digits_checked",
           "accuracy": {pixels: share read right}, "temperature": {pixels: fitted temperature}}
  describe(path, found) -> str: one line on what was found, for a report or the terminal
  serving_file(path) -> Path: where a foreign model's calibration (fit_serving's dict) is kept
  serving_info(path, found) -> dict: that calibration, else UNCALIBRATED with a note
  load(path, pixels=None, data_dir=None) -> a predict.Model, for `predict` and `serve`
"""

from __future__ import annotations

import functools
import json
import zipfile
from pathlib import Path

import numpy as np

from .errors import DigitlabError
from .files import read_json

LAYOUTS = ((28, 28, 1), (28, 28), (784,), (1, 28, 28))  # the tutorials' (Keras, flat, PyTorch)
PIXELS = {"1": (1.0, 0.0), "255": (255.0, 0.0), "standardized": (1 / 0.3081, -0.1307 / 0.3081)}  # x * a + b
PIXEL_NAMES = {"1": "[0, 1]", "255": "[0, 255]", "standardized": "(x - 0.1307) / 0.3081"}
# Detected among these only: "standardized" is close to [0, 1] times 3, which an underconfident
# model would seem to prefer; a PyTorch model's user says so with --pixels standardized.
DETECTED = ("1", "255")
CHECK_DIGITS = 500  # fits a temperature to within a few percent; quick even on one core
NEAR_CHANCE = 0.2  # below this under every scaling the model is not reading MNIST digits at all
SAME_ACCURACY = 0.05  # scalings reading within 5 points of the best are told apart by confidence
# Uncalibrated, its confidence means nothing yet: declining on it would be a guess, so none is declined.
UNCALIBRATED = {"temperature": 1.0, "threshold": 0.0, "calibrated": False}


def kind(path: Path) -> str | None:
    """The foreign format at `path`, or None for digitlab's own models and non-models."""
    from .runs import Run

    path = Path(path)
    if path.is_dir():
        return "savedmodel" if (path / "saved_model.pb").is_file() and not Run.is_run(path) else None
    if not path.is_file():
        return None
    if path.suffix in (".h5", ".hdf5"):
        return "h5"
    if path.suffix == ".keras":  # digitlab's own .keras files live in run folders, beside run.json
        return None if Run.is_run(path.parent) else "keras"
    if path.suffix == ".onnx":
        from .predict import META_PREFIX, onnx_session

        try:
            meta = onnx_session(path).get_modelmeta().custom_metadata_map
        except DigitlabError:
            return None  # unreadable: predict.OnnxModel says so
        return None if any(k.startswith(META_PREFIX) for k in meta) else "onnx"
    return None


def is_foreign(path: str | Path) -> bool:
    """True for a model digitlab did not train or export (see the module docstring)."""
    return kind(Path(path)) is not None


def serving_file(path: str | Path) -> Path:
    """A foreign model's calibration: `<file>.serving.json` beside it (a SavedModel: serving.json
    inside), else a plain serving.json beside the file; the first name when neither exists."""
    path = Path(path)
    if path.is_dir():
        return path / "serving.json"
    own, shared = path.with_name(path.name + ".serving.json"), path.parent / "serving.json"
    return shared if shared.is_file() and not own.is_file() else own


def describe(path: Path, found: dict) -> str:
    how = "detected" if found.get("pixels_detected") else "as told"
    accuracy, temperature = found.get("accuracy") or {}, found.get("temperature") or {}
    scores = "; ".join(
        f"{PIXEL_NAMES[p]}: {accuracy[p]:.1%} right, needing temperature {temperature[p]:.3g}" for p in accuracy
    )
    checked = f" ({how} on {found.get('digits_checked')} validation digits, {scores})" if scores else f" ({how})"
    gives = "logits (softmax added)" if found.get("logits") else "probabilities"
    return (
        f"{path}: trained elsewhere ({found.get('format')}); read as {tuple(found.get('layout', ()))} images with "
        f"pixels in {PIXEL_NAMES.get(found.get('pixels'), '?')}{checked}; it gives {gives}"
    )


def _layout(path: Path, inputs: list) -> tuple[int, ...]:
    """The per-image input shape among LAYOUTS; a symbolic dimension (None, a name) fits any size."""
    from .predict import _fits

    for layout in LAYOUTS:
        if _fits(inputs, (None, *layout)):
            return layout
    shapes = [tuple(s) if s is not None else None for s in inputs]
    raise DigitlabError(
        f"{path} is not a digit model: it takes {shapes}; digitlab adapts one batch of "
        "(28, 28), (28, 28, 1), (784,) or (1, 28, 28) images"
    )


def check_pixels(pixels: str | None) -> None:
    if pixels is not None and pixels not in PIXELS:
        raise DigitlabError(f"--pixels must be one of {', '.join(PIXELS)}, got '{pixels}'")


def _temperature(log_p: np.ndarray, labels: np.ndarray) -> float:
    """The temperature whose scaling of these log-probabilities best fits the labels."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    def loss(log10_t: float) -> float:
        return float(-log_softmax(log_p / 10**log10_t, axis=1)[np.arange(len(labels)), labels].mean())

    return float(10 ** minimize_scalar(loss, bounds=(-3, 4), method="bounded").x)


def _detect(path: Path, fmt: str, layout, run, x_val, y_val, pixels: str | None, data_dir=None) -> dict:
    """Which pixel scaling the model was trained under, and whether it gives logits.
    `run(images)`: the model's raw outputs for (N, 28, 28, 1) images already scaled.

    Accuracy alone cannot tell: a ReLU network with small biases reads about as many digits at
    255 times (or 1/255 of) its scale, its logits just grow (shrink) 255-fold. Its confidence is
    what changes: certain of every answer, or near 1/10 for every digit. So of the scalings that
    read nearly the most digits, the one taken needs the least temperature to fit the labels:
    within a few-fold of 1 at the scale the model was trained under, ~255-fold off at the other."""
    if x_val is None and pixels is None:
        x_val, y_val = check_digits(path, data_dir)
    elif x_val is None:
        x_val, y_val = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32), None
    x_val = np.asarray(x_val[:CHECK_DIGITS], np.float32)
    outputs = {}
    for name in [pixels] if pixels else DETECTED:
        scale, offset = PIXELS[name]
        outputs[name] = np.asarray(run(x_val * scale + offset), np.float64)
    # Probabilities are never negative and sum to 1 under any input; logits almost never do.
    logits = any((raw < 0).any() or not np.allclose(raw.sum(axis=1), 1.0, atol=1e-3) for raw in outputs.values())
    accuracy, temperature = {}, {}
    if y_val is not None:
        labels = np.asarray(y_val[: len(x_val)])
        for name, raw in outputs.items():
            accuracy[name] = float((raw.argmax(1) == labels).mean())
            temperature[name] = _temperature(raw if logits else np.log(np.clip(raw, 1e-12, 1.0)), labels)
    chosen = pixels
    if chosen is None:
        close = [name for name in accuracy if accuracy[name] >= max(accuracy.values()) - SAME_ACCURACY]
        chosen = min(close, key=lambda name: abs(np.log(temperature[name])))
        if accuracy[chosen] < NEAR_CHANCE:
            scores = ", ".join(f"{a:.0%} at {PIXEL_NAMES[p]}" for p, a in accuracy.items())
            raise DigitlabError(
                f"{path} reads {scores} of {len(x_val)} validation digits: not an MNIST digit classifier "
                "(white ink on black) that digitlab can adapt; if it is one, say its scale with --pixels"
            )
    found = dict(format=fmt, layout=list(layout), pixels=chosen, pixels_detected=pixels is None, logits=logits)
    return found | {"digits_checked": len(x_val) if accuracy else 0, "accuracy": accuracy, "temperature": temperature}


# --- Keras -----------------------------------------------------------------------------------


def _keras_config(path: Path) -> dict:
    """The model's architecture as saved, read without Keras: to refuse a Lambda before loading."""
    try:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json"))
        import h5py

        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config")
    except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        raise DigitlabError(
            f"cannot load Keras model {path}: {str(e).splitlines()[0]}; give a whole saved model"
        ) from None
    if config is None:
        raise DigitlabError(f"{path} holds weights only, no model; save the whole model with model.save(...)")
    return json.loads(config.decode() if isinstance(config, bytes) else config)


def _class_names(config) -> set[str]:
    if isinstance(config, list):
        return set().union(*map(_class_names, config)) if config else set()
    if not isinstance(config, dict):
        return set()
    names = {config["class_name"]} if isinstance(config.get("class_name"), str) else set()
    return names.union(*map(_class_names, config.values()))


def _read_keras(path: Path, fmt: str):
    """The foreign Keras model (a TFSMLayer for a SavedModel), its input and output shapes."""
    if fmt == "savedmodel":
        from .backend import keras, tf

        try:
            layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
        except Exception as e:  # TensorFlow raises many kinds for a bad folder
            raise DigitlabError(
                f"cannot load SavedModel {path}: {str(e).strip().splitlines()[0]}; "
                "it needs a serving_default signature (Keras: model.export(...))"
            ) from None
        signature = layer.call_endpoint_fn
        inputs = tf.nest.flatten(signature.structured_input_signature)
        outputs = tf.nest.flatten(signature.structured_outputs)
        if any(not spec.dtype.is_floating for spec in inputs):
            raise DigitlabError(f"{path} takes {[spec.dtype.name for spec in inputs]} images; digitlab gives floats")
        return layer, [tuple(s.shape) for s in inputs], [tuple(s.shape) for s in outputs]
    if "Lambda" in _class_names(_keras_config(path)):
        raise DigitlabError(
            f"{path} has a Lambda layer, whose Python code digitlab will not run (it could do anything); "
            "rebuild the model without it, or export it to ONNX yourself if you trust it"
        )
    from .backend import keras  # after the checks: a refusal should not wait for TensorFlow

    try:  # compile=False: no optimizer to restore, so no warning about its variables
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many kinds for a bad file
        raise DigitlabError(
            f"cannot load Keras model {path}: {str(e).strip().splitlines()[0]}; "
            "digitlab loads models of Keras' own layers: save it with them, or export it to ONNX"
        ) from None
    return model, [tuple(i.shape) for i in model.inputs], [tuple(o.shape) for o in model.outputs]


def _wrap(foreign, layout: tuple, pixels: str = "1", logits: bool = False, name: str = "foreign"):
    """digitlab's convention around the foreign model, in Keras layers (so ONNX export takes it)."""
    from .backend import keras
    from .models import INPUT_SHAPE

    layers = keras.layers
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = inputs
    if pixels != "1":
        x = layers.Rescaling(*PIXELS[pixels], name="pixels")(x)
    if tuple(layout) != INPUT_SHAPE:
        x = layers.Reshape(layout, name="layout")(x)
    x = foreign(x)
    if isinstance(x, dict):  # a SavedModel signature answers {output name: tensor}
        (x,) = x.values()
    if logits:
        x = layers.Softmax(name="probabilities", dtype="float32")(x)
    return keras.Model(inputs, x, name=name)


def load_keras(path: str | Path, x_val=None, y_val=None, pixels: str | None = None, data_dir=None):
    """A foreign .keras, .h5 or SavedModel as a digitlab-convention keras.Model, and what was found."""
    from .predict import check_output

    check_pixels(pixels)
    path = Path(path)
    fmt = kind(path) or ("savedmodel" if path.is_dir() else path.suffix.lstrip("."))
    if fmt == "onnx":
        raise DigitlabError(f"{path} is ONNX, not Keras: load it with load_onnx()")
    foreign, inputs, outputs = _read_keras(path, fmt)
    check_output(path, outputs)
    layout = _layout(path, inputs)
    base = _wrap(foreign, layout, name="unscaled")
    run = functools.partial(base.predict, batch_size=500, verbose=0)
    found = _detect(path, fmt, layout, run, x_val, y_val, pixels, data_dir)
    name = "".join(c if c.isalnum() or c in "_-" else "_" for c in (path.stem or path.name))
    return _wrap(foreign, layout, found["pixels"], found["logits"], name=f"foreign_{name}"), found


# --- ONNX ------------------------------------------------------------------------------------


def load_onnx(path: str | Path, x_val=None, y_val=None, pixels: str | None = None, data_dir=None):
    """A foreign .onnx file behind digitlab's convention, and what was found."""
    from .predict import ONNX_TYPES, AdaptedOnnxModel, check_output, onnx_session

    check_pixels(pixels)
    path = Path(path)
    session = onnx_session(path)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    check_output(path, [o.shape for o in outputs])
    if len(inputs) == 1 and inputs[0].type not in ONNX_TYPES:
        raise DigitlabError(f"{path} takes {inputs[0].type} images; digitlab gives floats")
    layout = _layout(path, [i.shape for i in inputs])
    adapter = AdaptedOnnxModel(path, session, layout)
    found = _detect(path, "onnx", layout, adapter.raw, x_val, y_val, pixels, data_dir)
    (adapter.scale, adapter.offset), adapter.logits = PIXELS[found["pixels"]], found["logits"]
    return adapter, found


# --- for predict and serve ---------------------------------------------------------------------


def check_digits(path: Path, data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """CHECK_DIGITS MNIST validation digits (never downloaded here: reading one image should not)."""
    from .data import load_mnist, load_raw, scale

    try:
        try:
            data = load_mnist(data_dir, download_missing=False)
        except ImportError:  # the serving install has no scikit-learn to draw the split with
            raw = load_raw(data_dir, download_missing=False)  # training digits tell a scale as well
            return scale(raw.train_images[:CHECK_DIGITS]), raw.train_labels[:CHECK_DIGITS].astype(np.int64)
    except DigitlabError as e:
        raise DigitlabError(
            f"{path} was trained elsewhere; to tell its pixel scale digitlab reads MNIST digits: {e}; "
            f"or give --pixels ({', '.join(PIXELS)})"
        ) from None
    return data.x_val[:CHECK_DIGITS], data.y_val[:CHECK_DIGITS]


def serving_info(path: Path, found: dict) -> dict:
    """What predict, serve and export record: calibration if digitlab has fitted one, else none."""
    info = {"name": path.stem or path.name, **UNCALIBRATED, "foreign": found}
    calibration = serving_file(path)
    if calibration.is_file():
        info.update(read_json(calibration), calibrated=True)
    else:
        info["note"] = (
            f"{path} is uncalibrated: temperature 1 and no digit declined; "
            f"`digitlab evaluate {path}` fits both on the validation split"
        )
    return info


def load(path: str | Path, pixels: str | None = None, data_dir: str | Path | None = None):
    """A foreign model ready to read digits (predict.KerasModel, or OnnxAdapter for ONNX)."""
    from .predict import KerasModel, check_calibration

    path = Path(path)
    calibration = serving_file(path)
    if pixels is None and calibration.is_file():  # `digitlab evaluate` found the scale once: no need again
        pixels = (read_json(calibration).get("foreign") or {}).get("pixels")
    if kind(path) == "onnx":
        reader, found = load_onnx(path, pixels=pixels, data_dir=data_dir)
        reader.info = serving_info(path, found)
        check_calibration(path, reader.info)
        return reader
    model, found = load_keras(path, pixels=pixels, data_dir=data_dir)
    return KerasModel(path, model, info=serving_info(path, found))
