"""Models digitlab did not train: load them safely and adapt them to digitlab's convention.

digitlab's convention: float32 (N, 28, 28, 1) images, pixels in [0, 1], white ink on black, in;
(N, 10) probabilities out. A foreign model is a .keras file outside a run folder, a legacy .h5,
a TensorFlow SavedModel folder, or an .onnx file without digitlab's metadata. Loading one finds:
  layout  its per-image input shape: (28, 28, 1), (28, 28), (784,) or (1, 28, 28)
  pixels  "1" ([0, 1]) or "255" ([0, 255]), detected on adapt.CHECK_DIGITS validation digits (see
          adapt.detect), unless the caller says (also "standardized": PyTorch's (x - 0.1307) / 0.3081)
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
  adapt.describe(path, found) -> str: one line on what was found, for a report or the terminal
  serving_file(path) -> Path: where a foreign model's calibration (calibration.fit's dict) is kept
  serving_info(path, found) -> dict: that calibration, else calibration.UNCALIBRATED with a note
  load(path, pixels=None, data_dir=None) -> a predict.Model, for `predict` and `serve`
"""

from __future__ import annotations

import functools
from pathlib import Path

from digitlab.errors import DigitlabError
from digitlab.files import UnreadableJSON, parse_json
from digitlab.io import adapt, native
from digitlab.io.native import ONNX_TYPES, AdaptedOnnxModel, KerasModel, check_output, keras_config
from digitlab.io.runtime import onnx_session
from digitlab.nn import calibration
from digitlab.training.runs import read_object


def kind(path: Path) -> str | None:
    """The foreign format at `path`, or None for digitlab's own models and non-models."""
    from digitlab.training.runs import Run

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
        try:
            meta = onnx_session(path).get_modelmeta().custom_metadata_map
        except DigitlabError:
            return None  # unreadable: predict.OnnxModel says so
        return None if any(k.startswith(native.META_PREFIX) for k in meta) else "onnx"
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


# --- Keras -----------------------------------------------------------------------------------


def _keras_config(path: Path) -> dict:
    """The model's architecture as saved, read without Keras (and within bounds: native.keras_config)
    to refuse a Lambda before loading."""
    if path.suffix == ".keras":
        return keras_config(path)
    import h5py

    try:
        with h5py.File(path, "r") as f:
            config = f.attrs.get("model_config")
        if config is None:
            raise DigitlabError(f"{path} holds weights only, no model; save the whole model with model.save(...)")
        return parse_json(config, f"{path}: model_config")
    except (OSError, UnreadableJSON) as e:
        raise DigitlabError(
            f"cannot load Keras model {path}: {str(e).splitlines()[0]}; give a whole saved model"
        ) from None


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
        from digitlab.nn.backend import keras, tf

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
    from digitlab.nn import pca  # noqa: F401  (registers PatchPCA: a digitlab model saved elsewhere has it)
    from digitlab.nn.backend import keras  # after the checks: a refusal should not wait for TensorFlow

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
    from digitlab.nn.backend import keras
    from digitlab.nn.models import INPUT_SHAPE

    layers = keras.layers
    inputs = keras.Input(INPUT_SHAPE, name="image")
    x = inputs
    if pixels != "1":
        x = layers.Rescaling(*adapt.PIXELS[pixels], name="pixels")(x)
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
    adapt.check_pixels(pixels)
    path = Path(path)
    fmt = kind(path) or ("savedmodel" if path.is_dir() else path.suffix.lstrip("."))
    if fmt == "onnx":
        raise DigitlabError(f"{path} is ONNX, not Keras: load it with load_onnx()")
    foreign, inputs, outputs = _read_keras(path, fmt)
    check_output(path, outputs)
    layout = adapt.layout(path, inputs)
    base = _wrap(foreign, layout, name="unscaled")
    run = functools.partial(base.predict, batch_size=500, verbose=0)
    found = adapt.detect(path, fmt, layout, run, x_val, y_val, pixels, data_dir)
    name = "".join(c if c.isalnum() or c in "_-" else "_" for c in (path.stem or path.name))
    return _wrap(foreign, layout, found["pixels"], found["logits"], name=f"foreign_{name}"), found


# --- ONNX ------------------------------------------------------------------------------------


def load_onnx(path: str | Path, x_val=None, y_val=None, pixels: str | None = None, data_dir=None):
    """A foreign .onnx file behind digitlab's convention, and what was found."""
    adapt.check_pixels(pixels)
    path = Path(path)
    session = onnx_session(path)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    check_output(path, [o.shape for o in outputs])
    if len(inputs) == 1 and inputs[0].type not in ONNX_TYPES:
        raise DigitlabError(f"{path} takes {inputs[0].type} images; digitlab gives floats")
    layout = adapt.layout(path, [i.shape for i in inputs])
    adapter = AdaptedOnnxModel(path, session, layout)
    found = adapt.detect(path, "onnx", layout, adapter.raw, x_val, y_val, pixels, data_dir)
    (adapter.scale, adapter.offset), adapter.logits = adapt.PIXELS[found["pixels"]], found["logits"]
    return adapter, found


# --- for predict and serve ---------------------------------------------------------------------


def serving_info(path: Path, found: dict) -> dict:
    """What predict, serve and export record: calibration if digitlab has fitted one, else none."""
    file = serving_file(path)
    note = (
        f"{path} is uncalibrated: temperature 1 and no digit declined; "
        f"`digitlab evaluate {path}` fits both on digits it did not see"
    )
    return {"name": path.stem or path.name, **calibration.served(_fitted(file), note), "foreign": found}


def _fitted(file: Path) -> dict | None:
    """The calibration `digitlab evaluate` wrote beside a model file, if any."""
    return read_object(file, "delete it and fit it again with `digitlab evaluate`")


def load(path: str | Path, pixels: str | None = None, data_dir: str | Path | None = None):
    """A foreign model ready to read digits (predict.KerasModel, or OnnxAdapter for ONNX)."""
    path = Path(path)
    fitted = serving_file(path)
    if pixels is None and fitted.is_file():  # `digitlab evaluate` found the scale once: no need again
        before = _fitted(fitted).get("foreign")
        pixels = before.get("pixels") if isinstance(before, dict) and isinstance(before.get("pixels"), str) else None
    if kind(path) == "onnx":
        reader, found = load_onnx(path, pixels=pixels, data_dir=data_dir)
        reader.info = serving_info(path, found)
        calibration.check(path, reader.info)
        return reader
    model, found = load_keras(path, pixels=pixels, data_dir=data_dir)
    return KerasModel(path, model, info=serving_info(path, found))
