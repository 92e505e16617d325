"""nn/calibration.py: the one place serving calibration is fitted and applied, and the one
meaning of "not calibrated" (temperature 1, nothing declined, and a note saying so)."""

from __future__ import annotations

import numpy as np
import pytest

from digitlab.io.native import KerasModel
from digitlab.nn import calibration
from digitlab.training.runs import Run


def overconfident(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities of a model right 90% of the time that claims ~99.9%."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    guess = np.where(rng.random(n) < 0.9, labels, (labels + rng.integers(1, 10, n)) % 10)
    logits = rng.normal(0, 1, (n, 10))
    logits[np.arange(n), guess] += 8.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, probs


def test_the_fitted_temperature_is_the_nll_minimum():
    labels, probs = overconfident()
    log_p = np.log(probs)
    fitted = calibration.fit_temperature(log_p, labels)
    grid = np.geomspace(0.05, 20, 4001)
    best = grid[np.argmin([calibration.nll(log_p, labels, t) for t in grid])]
    assert fitted == pytest.approx(best, rel=0.01)
    assert fitted > 1.5  # overconfident: softened


def test_fit_declines_the_share_it_is_told_and_counts_the_non_digits_it_declines():
    labels, probs = overconfident()
    flat = np.full((200, 10), 0.1)  # a non-digit the model cannot place: declined at any threshold above 0.1
    serving = calibration.fit(labels, probs, flat)
    assert serving["val_declined_fraction"] == pytest.approx(calibration.DECLINE_RATE, abs=1 / len(labels))
    assert serving["val_negatives_declined"] == 1.0
    assert serving["val_nll_after"] < serving["val_nll_before"]
    assert serving["number_threshold"] <= serving["threshold"]


def test_a_fitted_calibration_is_served_as_it_is():
    fitted = {"temperature": 1.3, "threshold": 0.6, "val_images": 10_000}
    assert calibration.served(fitted, "unused") == {**fitted, "calibrated": True}


@pytest.mark.parametrize("stored", [None, {}, {"temperature": 1.0, "threshold": 0.0, "calibrated": False}])
def test_not_calibrated_means_one_thing_everywhere(stored):
    served = calibration.served(stored, "fit one with `digitlab evaluate`")
    assert served["temperature"] == 1.0 and served["threshold"] == 0.0 and served["calibrated"] is False
    assert served["note"]


def test_a_run_folder_without_serving_json_declines_nothing(tmp_path):
    """A tune trial's folder has a model but no calibration: it used to decline every reading
    under 0.5 confidence, silently; it now declines nothing and says why."""
    from digitlab.nn.backend import keras

    run = Run.create(tmp_path / "trial")
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")])
    model.save(run.model)
    reader = KerasModel(run.model)
    assert reader.info["threshold"] == 0.0 and reader.info["calibrated"] is False
    assert f"digitlab evaluate {run.path}" in reader.info["note"]

    from digitlab.read.predict import read

    answers = read(reader, np.random.default_rng(0).random((8, 28, 28), dtype=np.float32))
    assert all(a["digit"] is not None for a in answers)  # an untrained model is unsure of all: none declined


@pytest.mark.parametrize("bad", [{"temperature": 0, "threshold": 0.5}, {"temperature": 1, "threshold": 1.5}])
def test_a_calibration_out_of_range_is_refused_in_one_line(bad):
    from digitlab.errors import DigitlabError

    with pytest.raises(DigitlabError, match="re-evaluate the model"):
        calibration.check("m.onnx", bad)
