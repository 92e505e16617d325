"""Calibration: the temperature that makes confidences honest and the threshold under which a
reading is declined, fitted on validation digits (never test) and applied on the serving side.
Fitting and applying live here, and so does the one meaning of "not calibrated"; the ridge head
(training/ridge.py) fits its softmax's temperature with the same fit.

Applying needs numpy alone, so reading a digit loads nothing heavy for it; fitting, SciPy too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digitlab.errors import DigitlabError

# Not calibrated: its confidence means nothing yet, so declining on it would be a guess and no
# digit is declined. Every model without a fitted calibration serves with this, and says so.
UNCALIBRATED = {"temperature": 1.0, "threshold": 0.0, "calibrated": False}

# The serving temperature is searched in this range: a trained digitlab model is never tenfold
# over- or underconfident, so a wider range would only let a tiny validation set run away.
SERVING_TEMPERATURES = (0.05, 20.0)
# The confidence threshold declines this share of validation digits, mostly the misread ones.
# Lower declines fewer readable photos and lets more non-digits through: 0.75% rather than 1%
# was chosen on the robustness suite's validation split, where it declines half as many readable
# photos for half a point fewer non-digits declined (docs/ROBUSTNESS.md).
DECLINE_RATE = 0.0075
# A digit inside a number that the user asked to read (--number) is a digit by their word: it is
# declined only where the model can hardly tell which, as 0.1% of validation digits are.
NUMBER_DECLINE_RATE = 0.001


def scale_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): T > 1 softens overconfident probabilities, T < 1 sharpens them."""
    logits = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def nll(log_p: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the labels under softmax(log_p / T)."""
    from scipy.special import log_softmax

    return float(
        -log_softmax(np.asarray(log_p, np.float64) / temperature, axis=1)[np.arange(len(labels)), labels].mean()
    )


def fit_temperature(log_p: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = SERVING_TEMPERATURES) -> float:
    """The temperature in `bounds` whose scaling of these log-probabilities (or logits) best fits
    the labels; searched on a log scale, where over- and underconfidence weigh alike."""
    from scipy.optimize import minimize_scalar

    low, high = np.log10(bounds[0]), np.log10(bounds[1])
    found = minimize_scalar(lambda e: nll(log_p, labels, 10**e), bounds=(low, high), method="bounded")
    return float(10**found.x)


def fit(labels: np.ndarray, probs: np.ndarray, negatives: np.ndarray | None = None) -> dict:
    """Temperature and decline thresholds from the model's probabilities for validation digits;
    `negatives`: its probabilities for validation non-digits, to report how many are declined."""
    log_p = np.log(np.clip(probs, 1e-12, 1.0))
    temperature = fit_temperature(log_p, labels)
    scaled = scale_temperature(probs, temperature)
    confidence, correct = scaled.max(1), scaled.argmax(1) == labels
    threshold = float(np.quantile(confidence, DECLINE_RATE))
    accepted = confidence >= threshold
    serving = {
        "val_images": len(labels),
        "val_accuracy": float((probs.argmax(1) == labels).mean()),
        "temperature": temperature,
        "threshold": threshold,
        "number_threshold": float(np.quantile(confidence, NUMBER_DECLINE_RATE)),
        "val_declined_fraction": float(1 - accepted.mean()),
        "val_accuracy_accepted": float(correct[accepted].mean()),
        "val_nll_before": nll(log_p, labels),
        "val_nll_after": nll(log_p, labels, temperature),
    }
    if negatives is not None and len(negatives):
        serving["val_negatives_declined"] = float((scale_temperature(negatives, temperature).max(1) < threshold).mean())
    return serving


def served(fitted: dict | None, note: str) -> dict:
    """What a model serves with: the calibration fitted for it, else UNCALIBRATED and `note`
    (which says how to fit one)."""
    fitted = fitted or {}
    if fitted.get("calibrated", True) and "temperature" in fitted and "threshold" in fitted:
        return {**fitted, "calibrated": True}
    return {"note": note, **UNCALIBRATED, **fitted}


def check(path: str | Path, info: dict) -> None:
    """A calibration read from a file is numbers in range, or the model is refused in one line."""
    temperature, threshold = info.get("temperature"), info.get("threshold")
    if not isinstance(temperature, (int, float)) or not 0 < temperature < 1e3 or temperature != temperature:
        raise DigitlabError(
            f"{path}: temperature must be a positive number, got {temperature!r}; re-evaluate the model"
        )
    if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise DigitlabError(f"{path}: threshold must be a number in [0, 1], got {threshold!r}; re-evaluate the model")
