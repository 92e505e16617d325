"""Models digitlab did not train: the tutorials' own, built here with Keras on real MNIST, then
detected, adapted, read with, exported and refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import digitlab
from foreign_models import by_hand

from digitlab.cli import main
from digitlab.io import adapt, export, foreign
from digitlab.io.load import load
from digitlab.io.native import OnnxModel


@pytest.mark.parametrize("name", ["h5", "keras", "savedmodel", "255", "logits", "onnx"])
def test_layout_pixels_and_logits_are_detected_and_adapted(built, mnist, name):
    path, expected, _ = built[name]
    loader = foreign.load_onnx if name == "onnx" else foreign.load_keras
    adapted, found = loader(path, mnist.x_val, mnist.y_val)
    assert {k: found[k] for k in expected} == expected, adapt.describe(path, found)
    assert found["pixels_detected"] and found["digits_checked"] == adapt.CHECK_DIGITS
    assert found["accuracy"][found["pixels"]] > 0.75

    def probabilities(model, x):
        return model.probabilities(x) if name == "onnx" else model.predict(x, verbose=0)

    x = mnist.x_test[:500]
    np.testing.assert_allclose(probabilities(adapted, x), by_hand(built, name, x), atol=1e-5)
    # Told the scale, it is not detected, and the other scale is taken at the user's word.
    other = "1" if expected["pixels"] == "255" else "255"
    told, found = loader(path, pixels=other)
    assert found["pixels"] == other and not found["pixels_detected"] and found["logits"] == expected["logits"]
    # atol 1e-4: at 255 times its scale a model's logits, and float32 rounding in them, grow 255-fold
    np.testing.assert_allclose(probabilities(told, x), by_hand(built, name, x, other), atol=1e-4)


def cli(*args: str, subprocess: bool, capsys) -> tuple[int, str, str]:
    """`digitlab ARGS` in a fresh process as a user runs it, or through the same entry point here
    (each fresh process pays TensorFlow's import again: seconds on two cores)."""
    if subprocess:
        result = digitlab(*args)
        return result.returncode, result.stdout, result.stderr
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("name", "subprocess"),
    [("h5", True), ("keras", False), ("savedmodel", True), ("255", False), ("logits", False), ("onnx", True)],
)
def test_predict_cli_reads_a_drawn_digit(built, data_dir, digit_png, capsys, name, subprocess):
    args = ("predict", str(digit_png), "--model", str(built[name][0]), "--json", "--data-dir", str(data_dir))
    code, out, err = cli(*args, subprocess=subprocess, capsys=capsys)
    assert code == 0, err
    answer = json.loads(out)
    assert answer["digit"] == 7, answer
    notes = err.splitlines()
    assert len(notes) == 2 and "trained elsewhere" in notes[0] and "uncalibrated" in notes[1], err
    assert "optimizer" not in err.lower() and "warning" not in err.lower()


@pytest.mark.parametrize(("name", "subprocess"), [("h5", False), ("savedmodel", True), ("255", False)])
def test_export_cli_gives_an_onnx_that_matches_the_model(built, mnist, data_dir, tmp_path, capsys, name, subprocess):
    out = tmp_path / "exported.onnx"
    args = ("export", str(built[name][0]), "--format", "onnx", "--out", str(out), "--data-dir", str(data_dir))
    code, stdout, stderr = cli(*args, subprocess=subprocess, capsys=capsys)
    assert code == 0 and stdout.strip() == f"wrote {out}", stderr
    assert "uncalibrated" in stderr
    exported = OnnxModel(out)  # digitlab's own now: (N, 28, 28, 1) in [0, 1], probabilities
    x = mnist.x_test[:1000]
    np.testing.assert_allclose(exported.probabilities(x), by_hand(built, name, x), atol=export.FOREIGN_TOLERANCE)
    assert exported.info["calibrated"] is False and exported.info["threshold"] == 0.0
    assert exported.info["foreign"]["pixels"] == built[name][1]["pixels"]


@pytest.mark.parametrize("name", ["h5", "onnx"])
def test_serve_reads_a_digit_with_a_foreign_model(built, data_dir, digit_png, monkeypatch, name):
    from fastapi.testclient import TestClient

    from digitlab.serve.app import create_app

    monkeypatch.setenv("DIGITLAB_DATA_DIR", str(data_dir))  # serve has no --data-dir: the usual places
    with TestClient(create_app(built[name][0])) as client:
        r = client.post("/v1/predict", files={"file": ("seven.png", digit_png.read_bytes(), "image/png")})
        assert r.status_code == 200 and r.json()["digit"] == 7, r.text
        card = client.get("/v1/model").json()
        assert card["temperature"] == 1.0 and card["threshold"] == 0.0  # uncalibrated: nothing declined


def test_calibration_beside_the_model_is_used_and_exported(built, tmp_path):
    model = tmp_path / "mnist_model.h5"
    shutil.copy(built["h5"][0], model)
    reader = load(model, pixels="1")
    assert reader.info["calibrated"] is False and reader.info["temperature"] == 1.0
    assert reader.info["threshold"] == 0.0 and f"digitlab evaluate {model}" in reader.info["note"]
    foreign.serving_file(model).write_text(json.dumps({"temperature": 1.7, "threshold": 0.6}))
    assert foreign.serving_file(model) == tmp_path / "mnist_model.h5.serving.json"
    reader = load(model, pixels="1")
    assert reader.info["calibrated"] is True and reader.info["temperature"] == 1.7 and "note" not in reader.info
    notes: list[str] = []
    exported = OnnxModel(export.export(model, "onnx", pixels="1", notes=notes))
    assert exported.info["temperature"] == pytest.approx(1.7) and exported.info["threshold"] == pytest.approx(0.6)
    assert "calibration carried from" in notes[1]


def test_the_adapted_model_saves_and_reloads_in_safe_mode(built, mnist, tmp_path):
    """What evaluation needs to keep a foreign model as a run's model.keras."""
    from digitlab.nn.models import load as load_saved

    model, _ = foreign.load_keras(built["logits"][0], pixels="1")
    model.save(tmp_path / "model.keras")
    x = mnist.x_test[:200]
    np.testing.assert_allclose(
        load_saved(tmp_path / "model.keras").predict(x, verbose=0), by_hand(built, "logits", x), atol=1e-6
    )


def test_which_models_are_foreign(built, tmp_path):
    from digitlab.io.native import DEFAULT_MODEL

    assert all(foreign.is_foreign(path) for path, *_ in built.values())
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(built["keras"][0], run / "model.keras")
    (run / "run.json").write_text("{}")
    assert not foreign.is_foreign(run) and not foreign.is_foreign(run / "model.keras")
    assert not foreign.is_foreign(DEFAULT_MODEL) and not foreign.is_foreign(tmp_path / "missing.h5")


@pytest.fixture(scope="module")
def not_digit_models(tmp_path_factory):
    from digitlab.nn.backend import keras

    layers = keras.layers
    folder = tmp_path_factory.mktemp("refused")

    def head(classes: int = 10) -> list:  # fresh layers for each model: a layer belongs to one
        return [layers.Flatten(), layers.Dense(classes, "softmax")]

    double = layers.Lambda(lambda t: t * 2.0)
    keras.Sequential([keras.Input((28, 28)), double, *head()]).save(folder / "lambda.keras")
    keras.Sequential([keras.Input((28, 28)), layers.Lambda(lambda t: t * 2.0), *head()]).save(folder / "lambda.h5")
    keras.Sequential([keras.Input((28, 28)), *head(3)]).save(folder / "three.keras")
    inputs = keras.Input((28, 28))
    heads = [layers.Dense(10, "softmax")(layers.Flatten()(inputs)) for _ in range(3)]
    keras.Model(inputs, heads).save(folder / "three_heads.keras")
    keras.Sequential([keras.Input((32, 32, 1)), *head()]).save(folder / "big.h5")
    (folder / "garbage.h5").write_bytes(b"not a model")
    (folder / "garbage.keras").write_bytes(b"not a model")
    return folder


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("lambda.keras", "has a Lambda layer, whose Python code digitlab will not run"),
        ("lambda.h5", "has a Lambda layer, whose Python code digitlab will not run"),
        ("three.keras", "is not a digit model: it gives [(None, 3)], not (N, 10) probabilities"),
        ("three_heads.keras", "it gives [(None, 10), (None, 10), (None, 10)], not (N, 10)"),
        ("big.h5", "is not a digit model: it takes [(None, 32, 32, 1)]; digitlab adapts one batch of"),
        ("garbage.h5", "cannot load Keras model"),
        ("garbage.keras", "cannot load Keras model"),
    ],
)
def test_models_that_are_not_digit_classifiers_are_refused_in_one_line(
    not_digit_models, digit_png, capsys, name, message
):
    path = not_digit_models / name
    for args in (["predict", str(digit_png), "--model", str(path)], ["export", str(path)]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}") or err.startswith(f"error: cannot load Keras model {path}"), err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err


def test_a_lambda_is_refused_by_the_real_cli_before_keras_reads_it(not_digit_models, digit_png):
    result = digitlab("predict", str(digit_png), "--model", str(not_digit_models / "lambda.h5"))
    assert result.returncode == 2 and "has a Lambda layer" in result.stderr and result.stderr.count("\n") == 1


def test_pixels_option_and_missing_digits_are_one_line(built, digit_png, capsys):
    path = built["h5"][0]
    assert main(["predict", str(digit_png), "--model", str(path), "--pixels", "3"]) == 2
    assert "--pixels must be one of 1, 255, standardized, got '3'" in capsys.readouterr().err
    assert main(["predict", str(digit_png), "--pixels", "255"]) == 2
    assert "--pixels is for models trained elsewhere" in capsys.readouterr().err
    # No MNIST in the isolated home and no --data-dir: say how to go on, do not download.
    assert main(["predict", str(digit_png), "--model", str(path)]) == 2
    err = capsys.readouterr().err
    assert "MNIST not found" in err and "or give --pixels" in err and err.count("\n") == 1
