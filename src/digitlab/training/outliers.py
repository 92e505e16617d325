"""Non-digits to train on, so the model learns to decline them (outlier exposure: Hendrycks et
al., 2019, "Deep anomaly detection with outlier exposure"). Their target is the uniform
distribution over the ten digits: the model learns to be unsure of them, its confidence falls
under the decline threshold, and its ten outputs stay the contract every other module relies on.

Two sources, both from training material only: negatives.training()'s glyphs, strokes, shapes
and textures (its own fonts and generators, never the robustness suite's), and two training
digits drawn over each other. Every image goes through preprocess.prepare(), as a user's would;
what preprocessing already declines (blank, noise) teaches the model nothing and is dropped.
"""

from __future__ import annotations

from itertools import chain

import numpy as np

from digitlab import cache
from digitlab.image.preprocess import prepare

NOT_A_DIGIT = -1  # the label of a negative in training targets (see training.targets)
OVERLAPS = 0.2  # share of the negatives that are two digits drawn over each other
# The validation negatives' stream. A run's training negatives take its seed moved up past
# TRAINING_STREAMS, so no seed (1_000_003 included) trains a model on the very negatives that
# calibrate and judge it; the validation negatives are those every earlier run was judged on.
VALIDATION_SEED = 1_000_003
TRAINING_STREAMS = 2**32  # every training stream lies at or above it, the validation one below


def overlapping_digits(digits: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Pairs of digits (N, 28, 28) white on black, the second moved 6-14 px sideways and up to
    4 px up or down: one blot of ink that is not one digit."""
    out = []
    for _ in range(n):
        a, b = digits[rng.integers(len(digits), size=2)]
        dx, dy = int(rng.integers(6, 15)), int(rng.integers(-4, 5))
        canvas = np.zeros((36, 28 + dx), np.float32)
        canvas[4:32, :28] = a
        canvas[4 + dy : 32 + dy, dx:] = np.maximum(canvas[4 + dy : 32 + dy, dx:], b)
        out.append(canvas)
    return out


def training_stream(seed: int) -> int:
    """The random stream of a run's training negatives: distinct for each seed, never VALIDATION_SEED."""
    if seed < 0:
        raise ValueError(f"a seed is a non-negative integer, got {seed}")
    return TRAINING_STREAMS + seed


def training_set(n: int, seed: int, digits: np.ndarray) -> np.ndarray:
    """About `n` prepared non-digits, (M, 28, 28, 1) float32 with M <= n, from `digits` (the
    training split's images) and negatives.training(), for the run with this `seed`."""
    return _negatives(n, training_stream(seed), digits)


def validation_set(n: int, digits: np.ndarray) -> np.ndarray:
    """Non-digits from the training sources for the validation split: `digits` are its images."""
    return _negatives(n, VALIDATION_SEED, digits)


def _negatives(n: int, stream: int, digits: np.ndarray) -> np.ndarray:
    """Made once for each (n, stream, digits) and then read back (cache.py): the same for every model."""
    return cache.arrays("negatives", (n, stream, cache.fingerprint(digits)), lambda: (_make(n, stream, digits),))[0]


def _make(n: int, stream: int, digits: np.ndarray) -> np.ndarray:
    from digitlab.data.negatives import training

    rng = np.random.default_rng(stream)
    n_overlaps = int(OVERLAPS * n)
    sources = chain(training(n - n_overlaps, stream), overlapping_digits(digits.reshape(-1, 28, 28), n_overlaps, rng))
    prepared = (prepare(image) for image in sources)  # one image at a time: only the 28x28s are kept
    kept = [p.image for p in prepared if p.reason is None]
    return np.stack(kept)[..., None] if kept else np.zeros((0, 28, 28, 1), np.float32)


def with_negatives(x: np.ndarray, y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training digits (x, y) plus `share` times as many non-digits, labelled NOT_A_DIGIT."""
    if share == 0:
        return x, y
    negatives = training_set(round(share * len(x)), seed, x)
    return np.concatenate([x, negatives]), np.concatenate([y, np.full(len(negatives), NOT_A_DIGIT, y.dtype)])
