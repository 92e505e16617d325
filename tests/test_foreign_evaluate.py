"""`digitlab evaluate MODEL_FILE`: a model trained elsewhere gets digitlab's report, its figures
the ones Keras' own evaluate gives, and a calibration that predict, export and ensembles use."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import digitlab
from foreign_models import by_hand

from digitlab.io.native import OnnxModel
from digitlab.training.runs import Run


@pytest.fixture(scope="module")
def evaluated(built, data_dir, tmp_path_factory):
    """The tutorial MLP saved as .h5, evaluated by the real CLI into a run folder."""
    folder = tmp_path_factory.mktemp("evaluated")
    model = folder / "mnist_model.h5"
    shutil.copy(built["h5"][0], model)
    out = folder / "run"
    result = digitlab("evaluate", str(model), "--out", str(out), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    return model, out, result


def test_its_figures_are_what_keras_evaluate_gives(evaluated, built, mnist):
    _, out, result = evaluated
    raw = built["h5"][2]
    raw.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    loss, accuracy = raw.evaluate(mnist.x_test[..., 0], mnist.y_test, batch_size=1000, verbose=0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert metrics["raw"]["test_loss"] == pytest.approx(loss, abs=1e-4)  # the softmax as trained
    assert f"test accuracy {metrics['test_accuracy']:.2%}" in result.stdout


def test_its_loss_and_calibration_are_those_of_what_is_served(evaluated, built, mnist):
    """predict and serve apply the fitted temperature: the report's loss, ECE and diagram do too."""
    from sklearn.metrics import log_loss

    from digitlab.evaluation.metrics import calibration
    from digitlab.nn.calibration import scale_temperature

    _, out, _ = evaluated
    metrics = json.loads((out / "metrics.json").read_text())
    temperature = metrics["serving"]["temperature"]
    assert abs(temperature - 1) > 0.01  # a temperature that changes something, or this test shows nothing
    served = scale_temperature(built["h5"][2].predict(mnist.x_test[..., 0], batch_size=1000, verbose=0), temperature)
    assert metrics["test_loss"] == pytest.approx(log_loss(mnist.y_test, served, labels=range(10)), abs=1e-4)
    ece = calibration(mnist.y_test, served.argmax(1), served.max(1))["ece"]
    assert metrics["calibration"]["ece"] == pytest.approx(ece, abs=1e-4)
    assert metrics["test_loss"] != pytest.approx(metrics["raw"]["test_loss"], abs=1e-4)
    report = Run.open(out).report.read_text()
    assert f"{metrics['test_loss']:.4f} (raw softmax: {metrics['raw']['test_loss']:.4f})" in report


def test_its_report_says_it_was_trained_elsewhere_and_how_it_was_read(evaluated):
    model, out, _ = evaluated
    run = Run.open(out)
    assert run.record.kind == "foreign" and run.record.source == str(model)
    assert run.record.adapted["pixels"] == "1" and run.record.adapted["layout"] == [28, 28]
    report = run.report.read_text()
    assert "trained elsewhere: digitlab cannot know whether its training saw the test split" in report
    assert "read as (28, 28) images with pixels in [0, 1]" in report
    assert f"digitlab evaluate {model} --out {out}" in report
    serving = run.read_serving()
    # Its fit() may have seen digitlab's validation split: it is calibrated on test digits it cannot have seen.
    assert 0 < serving["threshold"] < 1 and serving["val_images"] == 5_000
    assert serving["calibrated_on"] == "every other test digit (5,000)"
    assert "fitted on every other test digit (5,000)" in report


def test_predict_and_export_use_the_calibration_it_fitted(evaluated, digit_png, tmp_path):
    model, out, _ = evaluated
    serving = Run.open(out).read_serving()
    beside = json.loads((model.parent / f"{model.name}.serving.json").read_text())
    assert beside["temperature"] == serving["temperature"] and beside["threshold"] == serving["threshold"]
    for source in (model, out):  # the file itself, and the run folder holding its adapted copy
        read = digitlab("predict", str(digit_png), "--model", str(source), "--json")
        assert read.returncode == 0, read.stderr
        assert json.loads(read.stdout)["digit"] == 7
    onnx = tmp_path / "graded.onnx"
    exported = digitlab("export", str(out), "--format", "onnx", "--out", str(onnx))
    assert exported.returncode == 0, exported.stderr
    info = OnnxModel(onnx).info
    assert info["temperature"] == pytest.approx(serving["temperature"])
    assert info["threshold"] == pytest.approx(serving["threshold"])


def test_an_onnx_model_with_its_own_layout_is_graded_too(built, mnist, data_dir, tmp_path):
    source = tmp_path / "torch_like.onnx"
    shutil.copy(built["onnx"][0], source)
    out = tmp_path / "run"
    result = digitlab("evaluate", str(source), "--out", str(out), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    expected = (by_hand(built, "onnx", mnist.x_test).argmax(1) == mnist.y_test).mean()
    assert json.loads((out / "metrics.json").read_text())["test_accuracy"] == pytest.approx(expected, abs=1e-4)
    assert Run.open(out).record.adapted["layout"] == [1, 28, 28]


def test_what_is_not_a_model_is_one_line(tmp_path, data_dir):
    junk = tmp_path / "notes.txt"
    junk.write_text("not a model")
    for path, message in ((junk, "neither a run folder nor a model file"), (tmp_path / "nope.h5", "no run folder")):
        result = digitlab("evaluate", str(path), "--data-dir", str(data_dir))
        assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1
    assert np.array_equal(sorted(p.name for p in tmp_path.iterdir()), ["notes.txt"])  # nothing left behind


def test_a_savedmodel_is_graded_and_two_graded_models_make_an_ensemble(built, evaluated, data_dir, tmp_path):
    saved = tmp_path / "cnn_savedmodel"
    shutil.copytree(built["savedmodel"][0], saved)
    out = tmp_path / "saved-run"
    result = digitlab("evaluate", str(saved), "--out", str(out), "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    assert (saved / "serving.json").is_file() and not (out / "model.keras").exists()  # kept as its folder
    pixels255 = tmp_path / "pixels255.keras"
    shutil.copy(built["255"][0], pixels255)
    other = tmp_path / "255-run"
    assert digitlab("evaluate", str(pixels255), "--out", str(other), "--data-dir", str(data_dir)).returncode == 0
    assert Run.open(other).record.adapted["pixels"] == "255"
    _, first, _ = evaluated
    both = tmp_path / "ensemble"
    made = digitlab("ensemble", str(first), str(other), "--out", str(both), "--data-dir", str(data_dir))
    assert made.returncode == 0, made.stderr
    assert Run.open(both).record.members == [str(first), str(other)]
