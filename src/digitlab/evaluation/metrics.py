"""Every figure of a run's metrics.json from true labels and predicted probabilities."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, log_loss

CLASSES = [str(d) for d in range(10)]
CALIBRATION_BINS = 15


def score(labels: np.ndarray, probs: np.ndarray) -> dict:
    """All test figures from true labels (N,) and predicted probabilities (N, 10)."""
    predicted = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    confusion = confusion_matrix(labels, predicted, labels=range(10))
    report = classification_report(
        labels, predicted, labels=range(10), target_names=CLASSES, output_dict=True, zero_division=0
    )
    return {
        "test_accuracy": float((predicted == labels).mean()),
        "test_loss": float(log_loss(labels, probs, labels=range(10))),
        "test_errors": int((predicted != labels).sum()),
        "test_size": len(labels),
        "per_class": {c: {k: report[c][k] for k in ("precision", "recall", "f1-score", "support")} for c in CLASSES},
        "macro_f1": report["macro avg"]["f1-score"],
        "confusion": confusion.tolist(),
        "most_confused": most_confused(confusion),
        "calibration": calibration(labels, predicted, confidence),
    }


def most_confused(confusion: np.ndarray, top: int = 10) -> list[dict]:
    off = confusion.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:top]
    pairs = [np.unravel_index(i, off.shape) for i in order]
    return [{"true": int(t), "predicted": int(p), "count": int(off[t, p])} for t, p in pairs if off[t, p] > 0]


def calibration(labels: np.ndarray, predicted: np.ndarray, confidence: np.ndarray) -> dict:
    """Top-label reliability: accuracy vs confidence in equal-width bins, and the expected
    calibration error (the bins' |accuracy - confidence| weighted by their share)."""
    edges = np.linspace(0, 1, CALIBRATION_BINS + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, CALIBRATION_BINS - 1)
    correct = predicted == labels
    bins = []
    ece = 0.0
    for b in range(CALIBRATION_BINS):
        mask = which == b
        if mask.any():
            acc, conf = float(correct[mask].mean()), float(confidence[mask].mean())
            ece += mask.mean() * abs(acc - conf)
            bins.append(
                {
                    "lower": float(edges[b]),
                    "upper": float(edges[b + 1]),
                    "count": int(mask.sum()),
                    "accuracy": acc,
                    "confidence": conf,
                }
            )
    return {"ece": float(ece), "bins": bins}
