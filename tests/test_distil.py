"""Distillation from the shipped model (experiments/distil.py, `--distil`): the targets, their
cache, and a distilled run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from digitlab.errors import DigitlabError
from digitlab.experiments import distil
from digitlab.training.config import TrainConfig


def test_targets_share_the_label_with_the_teachers_softened_guess(mnist, inputs_cache):
    x, y = mnist.x_train[:300], mnist.y_train[:300]
    label = distil.targets(x, y, 0.0)
    np.testing.assert_array_equal(label, np.eye(10, dtype=np.float32)[y])
    teacher = distil.targets(x, y, 1.0)
    np.testing.assert_allclose(teacher.sum(axis=1), 1, atol=1e-5)
    assert np.mean(teacher.argmax(axis=1) == y) > 0.97  # the shipped model reads training digits
    # Softened: its second guesses carry weight (at temperature 1 they would be ~0).
    assert np.median(np.sort(teacher, axis=1)[:, -2]) > 0.01
    np.testing.assert_allclose(distil.targets(x, y, 0.5), 0.5 * label + 0.5 * teacher, atol=1e-6)
    # The teacher's reading is kept: a second run reads the same rows back.
    assert list(inputs_cache.glob("teacher-*.npz"))
    np.testing.assert_array_equal(distil.targets(x, y, 1.0), teacher)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"distil": 1.5}, "--distil must be between 0 and 1"),
        ({"distil": -0.1}, "--distil must be between 0 and 1"),
    ],
)
def test_distil_settings_are_checked(settings, message):
    with pytest.raises(DigitlabError, match=message):
        TrainConfig(model="fast", **settings).check()


def test_a_distilled_run_trains_on_the_teachers_targets(mnist, tmp_path):
    from digitlab.experiments.pipeline import train

    # With non-digits too: the teacher's rows are the digits', the non-digits keep uniform rows.
    config = TrainConfig.for_model("fast", distil=0.5, negatives=0.1, epochs=1, subset=3000)
    run = train(config, data=mnist, out=tmp_path / "distilled", evaluate_after=False, verbose=0)
    record = json.loads((run / "run.json").read_text())
    assert record["config"]["distil"] == 0.5 and record["status"] == "completed"
    assert record["data"]["negatives"] > 200  # about a tenth of the 3,000 digits
    assert record["best"]["val_accuracy"] > 0.9
