"""Test figures on constructed cases whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from digitlab.evaluation.metrics import CALIBRATION_BINS, calibration, score


def predictions(confidence: float, right: int, wrong: int) -> tuple[np.ndarray, np.ndarray]:
    """right + wrong readings of digit 3 with top probability `confidence` (the rest spread evenly
    over the other nine); the first `right` are labelled 3, the others 4."""
    n = right + wrong
    probs = np.full((n, 10), (1 - confidence) / 9)
    probs[:, 3] = confidence
    return np.r_[np.full(right, 3), np.full(wrong, 4)], probs


def test_expected_calibration_error_of_a_constructed_case():
    # Three readings in four at 95% confidence, right 80% of the time (off by 0.15); one in four
    # at 55%, right half the time (off by 0.05): ECE = 0.75 * 0.15 + 0.25 * 0.05 = 0.125.
    sure, unsure = predictions(0.95, right=24, wrong=6), predictions(0.55, right=5, wrong=5)
    labels, probs = np.r_[sure[0], unsure[0]], np.r_[sure[1], unsure[1]]
    found = score(labels, probs)["calibration"]
    assert found["ece"] == pytest.approx(0.125)
    assert [b["count"] for b in found["bins"]] == [10, 30]
    assert [b["accuracy"] for b in found["bins"]] == pytest.approx([0.5, 0.8])
    assert [b["confidence"] for b in found["bins"]] == pytest.approx([0.55, 0.95])
    assert found["bins"][1]["upper"] == 1.0 and found["bins"][0]["lower"] == pytest.approx(8 / CALIBRATION_BINS)


def test_calibrated_readings_have_no_calibration_error():
    # Right 3 times in 4 at 75% confidence, and 9 times in 10 at 90%: calibrated, ECE 0.
    parts = [predictions(0.75, right=3, wrong=1), predictions(0.9, right=9, wrong=1)]
    labels, probs = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    assert calibration(labels, probs.argmax(1), probs.max(1))["ece"] == pytest.approx(0.0, abs=1e-12)
    # Always right at 62% confidence: underconfident by 0.38.
    labels, probs = predictions(0.62, right=5, wrong=0)
    assert calibration(labels, probs.argmax(1), probs.max(1))["ece"] == pytest.approx(0.38)
