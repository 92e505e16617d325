"""The closed-form head (training/ridge.py): the solve against numpy's least squares, the head
as Keras computes it against the features it was solved on, and `--head ridge` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import digitlab

from digitlab.errors import DigitlabError
from digitlab.training import ridge
from digitlab.training.config import TrainConfig


def lstsq_ridge(h: np.ndarray, t: np.ndarray, strength: float) -> np.ndarray:
    """Ridge regression as plain least squares on a stacked system: [H; sqrt(a) I] W = [T; 0]."""
    a = strength * np.trace(h.T @ h) / h.shape[1]
    stacked = np.vstack([h, np.sqrt(a) * np.eye(h.shape[1])])
    return np.linalg.lstsq(stacked, np.vstack([t, np.zeros((h.shape[1], t.shape[1]))]), rcond=None)[0]


def test_solve_is_numpys_least_squares():
    rng = np.random.default_rng(0)
    h, t = rng.standard_normal((300, 20)), rng.standard_normal((300, 10))
    plain = np.linalg.lstsq(h, t, rcond=None)[0]
    np.testing.assert_allclose(ridge.solve(h.T @ h, h.T @ t, 1e-12), plain, atol=1e-8)
    for strength in (1e-3, 1e-1):
        np.testing.assert_allclose(ridge.solve(h.T @ h, h.T @ t, strength), lstsq_ridge(h, t, strength), atol=1e-8)
    assert not np.allclose(ridge.solve(h.T @ h, h.T @ t, 1e-1), plain, atol=1e-3)  # the ridge does shrink


def test_logreg_head_is_the_least_squares_solution_on_its_pixels(mnist):
    """Over a linear model's input (the pixels and a bias), the head fit() solves is numpy's
    ridge solution at the strength it chose, its temperature aside."""
    from digitlab.nn.models import build

    x, y = mnist.x_train[:1500], mnist.y_train[:1500]
    solved, info = ridge.fit(build("logreg"), x, y, mnist.x_val[:500], mnist.y_val[:500], width=0, seed=0)
    assert info["ridge"] in ridge.RIDGES and 0.7 < info["val_accuracy"] <= 1  # linear, 1,500 images
    kernel, bias = solved.layers[-1].get_weights()
    h = ridge.with_bias(x.reshape(len(x), -1).astype(np.float64))
    expected = lstsq_ridge(h, np.eye(10)[y], info["ridge"])
    got = np.vstack([kernel, bias]) / info["temperature"]
    np.testing.assert_allclose(h @ got, h @ expected, atol=2e-3)  # the same scores on every image


SMALL = slice(0, 3000), slice(0, 600)  # training and validation images of the small problem


@pytest.fixture(scope="module")
def untrained(mnist):
    from digitlab.nn.models import adapt, build

    model = build("fast")  # PatchPCA fitted, the conv after it as initialised: random features
    adapt(model, mnist.x_train[:2000])
    return model


def solve_small(model, mnist, seed: int):
    (train, val), width = SMALL, 400
    return ridge.fit(model, mnist.x_train[train], mnist.y_train[train], mnist.x_val[val], mnist.y_val[val], width, seed)


@pytest.fixture(scope="module")
def solved(untrained, mnist):
    return solve_small(untrained, mnist, seed=3)


def test_random_units_over_untrained_layers_read_digits(solved, mnist):
    model, info = solved
    probs = np.asarray(model.predict(mnist.x_val[:600], verbose=0))
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    accuracy = float(np.mean(probs.argmax(axis=1) == mnist.y_val[:600]))
    # Keras' model (standardisation folded into the random units) reads as the NumPy solve did.
    assert abs(accuracy - info["val_accuracy"]) <= 2 / 600
    log_loss = -np.mean(np.log(probs[np.arange(600), mnist.y_val[:600]]))
    assert info["val_loss"] == pytest.approx(log_loss, rel=1e-4)  # the solve's own figure is Keras' too
    assert accuracy > 0.9  # no gradient step: fixed filters, random units, one solve
    assert [layer.name for layer in model.layers[-2:]] == ["random_units", "ridge_head"]
    assert not model.layers[-2].trainable


def test_the_seed_draws_the_random_units(solved, untrained, mnist):
    again, other = solve_small(untrained, mnist, seed=3)[0], solve_small(untrained, mnist, seed=4)[0]
    for a, b in zip(solved[0].layers[-1].get_weights(), again.layers[-1].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(solved[0].layers[-2].get_weights()[0], other.layers[-2].get_weights()[0])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"hidden": 100}, "--hidden must be 0, or positive with --head ridge"),
        ({"head": "ridge", "hidden": -1}, "--hidden must be 0, or positive with --head ridge"),
        ({"head": "lasso"}, "--head must be one of softmax, ridge"),
        ({"epochs": 0}, "--epochs must be at least 1"),
    ],
)
def test_head_settings_are_checked(settings, message):
    with pytest.raises(DigitlabError, match=message):
        TrainConfig(model="fast", **settings).check()
    TrainConfig(model="fast", head="ridge", epochs=0, hidden=10).check()  # no epoch: the solve alone


def test_train_with_a_ridge_head_then_export_and_predict(tmp_path, data_dir):
    """The real CLI: no epoch of gradient descent, the head solved; the report says so, and the
    ONNX export reads as the Keras model does."""
    run = tmp_path / "ridge"
    args = ["--model", "fast", "--epochs", "0", "--head", "ridge", "--hidden", "500", "--subset", "4000"]
    result = digitlab("train", *args, "--out", str(run), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    record = json.loads((run / "run.json").read_text())
    assert record["epochs_run"] == 0 and record["head"]["ridge"] in ridge.RIDGES
    assert record["best"]["val_accuracy"] == record["head"]["val_accuracy"] > 0.9
    assert json.loads((run / "metrics.json").read_text())["test_accuracy"] > 0.9
    assert "least squares over 500 random units after 0 epochs" in (run / "report.md").read_text()
    exported = digitlab("export", str(run), "--data-dir", str(data_dir))
    assert exported.returncode == 0, exported.stderr
    assert "export checked against Keras" in exported.stdout + exported.stderr
