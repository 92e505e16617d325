"""How a model trained elsewhere wants its images: the input layout, the pixel scale it was
trained under (detected on validation digits: see detect()) and whether it gives logits.

No TensorFlow or ONNX Runtime here: `run` is any function from images to the model's outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digitlab.errors import DigitlabError
from digitlab.io.native import fits
from digitlab.nn import calibration

LAYOUTS = ((28, 28, 1), (28, 28), (784,), (1, 28, 28))  # the tutorials' (Keras, flat, PyTorch)
PIXELS = {"1": (1.0, 0.0), "255": (255.0, 0.0), "standardized": (1 / 0.3081, -0.1307 / 0.3081)}  # x * a + b
PIXEL_NAMES = {"1": "[0, 1]", "255": "[0, 255]", "standardized": "(x - 0.1307) / 0.3081"}
# Detected among these only: "standardized" is close to [0, 1] times 3, which an underconfident
# model would seem to prefer; a PyTorch model's user says so with --pixels standardized.
DETECTED = ("1", "255")
CHECK_DIGITS = 500  # fits a temperature to within a few percent; quick even on one core
NEAR_CHANCE = 0.2  # below this under every scaling the model is not reading MNIST digits at all
SAME_ACCURACY = 0.05  # scalings reading within 5 points of the best are told apart by confidence
# The pixel scale it was trained under needs a temperature within a few-fold of 1; the wrong
# scale needs one ~255-fold off: the search must span both to tell them apart (see detect).
DETECT_TEMPERATURES = (1e-3, 1e4)


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


def layout(path: Path, inputs: list) -> tuple[int, ...]:
    """The per-image input shape among LAYOUTS; a symbolic dimension (None, a name) fits any size."""
    for layout in LAYOUTS:
        if fits(inputs, (None, *layout)):
            return layout
    shapes = [tuple(s) if s is not None else None for s in inputs]
    raise DigitlabError(
        f"{path} is not a digit model: it takes {shapes}; digitlab adapts one batch of "
        "(28, 28), (28, 28, 1), (784,) or (1, 28, 28) images"
    )


def check_pixels(pixels: str | None) -> None:
    if pixels is not None and pixels not in PIXELS:
        raise DigitlabError(f"--pixels must be one of {', '.join(PIXELS)}, got '{pixels}'")


def detect(path: Path, fmt: str, layout, run, x_val, y_val, pixels: str | None, data_dir=None) -> dict:
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
            scores = raw if logits else np.log(np.clip(raw, 1e-12, 1.0))
            temperature[name] = calibration.fit_temperature(scores, labels, DETECT_TEMPERATURES)
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


def check_digits(path: Path, data_dir: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """CHECK_DIGITS MNIST validation digits (never downloaded here: reading one image should not)."""
    from digitlab.data.mnist import load_mnist, load_raw, scale

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
