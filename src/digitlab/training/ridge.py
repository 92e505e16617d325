"""A closed-form output layer: least squares (ridge regression onto one-hot targets) over the
features below it, widened first, if asked, by fixed random ReLU units (an "extreme learning
machine": Huang et al. 2006; on MNIST, McDonnell et al. 2015).

Why: a least-squares solve is a few large matrix products, which a CPU runs near its peak, where
gradient descent on small batches does not. `train --head ridge` solves the head after the
epochs of gradient descent (or instead of them, `--epochs 0`: the untrained layers are then
random features); the ridge strength and the softmax's temperature are chosen on validation.
What the head is made of stays plain Keras (two Dense layers): saved, exported and served as
any other model.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import scipy.linalg

from digitlab.errors import DigitlabError
from digitlab.nn import calibration
from digitlab.nn.backend import keras
from digitlab.nn.models import NUM_CLASSES

CHUNK = 2_000  # images per pass through the layers: memory is CHUNK x width floats, not N x width
# Ridge strengths tried, relative to the Gram matrix's mean diagonal (so one grid fits any
# feature scale); the best on validation wins.
RIDGES = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
SCORE_TEMPERATURES = (np.exp(-8), np.exp(3))  # the softmax's factor on the scores from e**-3 to e**8
INIT_SCALE = 0.5  # spread of the random units' biases, in standard deviations of their input


def solve(gram: np.ndarray, cross: np.ndarray, ridge: float) -> np.ndarray:
    """argmin_W |HW - T|^2 + ridge * mean(diag(H'H)) * |W|^2, from gram = H'H and cross = H'T."""
    scale = ridge * np.trace(gram) / len(gram)
    factor = scipy.linalg.cho_factor(gram + scale * np.eye(len(gram)), check_finite=False)
    return scipy.linalg.cho_solve(factor, cross, check_finite=False)


def with_bias(h: np.ndarray) -> np.ndarray:
    return np.hstack([h, np.ones((len(h), 1), h.dtype)])


class Features:
    """What the head sees: the trained layers' output, then (width > 0) `width` fixed random ReLU
    units over its standardised values, the standardisation folded into their weights."""

    def __init__(self, trunk: keras.Model, width: int, sample: np.ndarray, seed: int):
        self.trunk, self.kernel, self.bias = trunk, None, None
        if width:
            f = self.below(sample)
            mean, std = f.mean(axis=0), f.std(axis=0) + 1e-3  # a dead feature stays finite
            rng = np.random.default_rng(seed)
            kernel = rng.standard_normal((f.shape[1], width)) / np.sqrt(f.shape[1])  # unit-variance sums
            bias = INIT_SCALE * rng.standard_normal(width)
            self.kernel = (kernel / std[:, None]).astype(np.float32)
            self.bias = (bias - (mean / std) @ kernel).astype(np.float32)

    def below(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.trunk(images, training=False), np.float32).reshape(len(images), -1)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        f = self.below(images)
        return with_bias(f if self.kernel is None else np.maximum(f @ self.kernel + self.bias, 0))

    def chunks(self, images: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
        for start in range(0, len(images), CHUNK):
            part = slice(start, start + CHUNK)
            yield part, self(images[part])


def temperature(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The factor on least-squares scores whose softmax has the least log-loss on `labels`, and
    that log-loss: calibration's temperature fit, inverted (least-squares scores are about 1 for
    the right digit, so the factor is large: up to e**8)."""
    t = calibration.fit_temperature(scores, labels, SCORE_TEMPERATURES)
    return 1 / t, calibration.nll(scores, labels, t)


def fit(
    model: keras.Model, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, width: int, seed: int
) -> tuple[keras.Model, dict]:
    """`model` with its last layer replaced by the ridge head over `width` random units (0: over
    the layer below directly), solved on (x, y); the ridge and temperature chosen on (x_val,
    y_val). Returns the new model and the head's validation figures."""
    t0 = time.perf_counter()
    trunk = keras.Model(model.inputs[0], model.layers[-2].output)
    features = Features(trunk, width, x[np.random.default_rng(seed).permutation(len(x))[:CHUNK]], seed)
    targets = np.eye(NUM_CLASSES)[y]
    gram, cross = 0.0, 0.0
    for part, h in features.chunks(x):  # float32 products, float64 sums: 50k rows lose no digits
        gram = gram + (h.T @ h).astype(np.float64)
        cross = cross + h.T.astype(np.float64) @ targets[part]
    h_val = np.concatenate([h for _, h in features.chunks(x_val)])
    best = None
    for ridge in RIDGES:
        try:
            weights = solve(gram, cross, ridge)
        except np.linalg.LinAlgError:  # too weak for this Gram matrix (more units than images): a stronger one
            continue
        accuracy = float(np.mean((h_val @ weights).argmax(axis=1) == y_val))
        if best is None or accuracy > best[0]:
            best = (accuracy, ridge, weights)
    if best is None:
        raise DigitlabError(
            f"the ridge head's solve failed at every strength up to {RIDGES[-1]}; use fewer --hidden units"
        )
    accuracy, ridge, weights = best
    t, val_loss = temperature(h_val @ weights, y_val)  # the head's softmax on validation, as Keras computes it
    return _assemble(trunk, features, t * weights, model.name), {
        "val_loss": val_loss,
        "val_accuracy": accuracy,
        "ridge": ridge,
        "temperature": t,
        "solve_s": round(time.perf_counter() - t0, 2),
    }


def _assemble(trunk: keras.Model, features: Features, weights: np.ndarray, name: str) -> keras.Model:
    x = trunk.output
    if features.kernel is not None:
        hidden = keras.layers.Dense(len(features.bias), activation="relu", trainable=False, name="random_units")
        x = hidden(x)
        hidden.set_weights([features.kernel, features.bias])
    head = keras.layers.Dense(NUM_CLASSES, activation="softmax", dtype="float32", name="ridge_head")
    out = head(x)
    head.set_weights([weights[:-1].astype(np.float32), weights[-1].astype(np.float32)])
    return keras.Model(trunk.inputs[0], out, name=name)
