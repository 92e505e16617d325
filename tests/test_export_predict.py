"""Export (ONNX and SavedModel, each checked against Keras) and `digitlab predict` on real image files."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import digitlab
from PIL import Image

from digitlab.io.export import export
from digitlab.io.load import load
from digitlab.io.native import KerasModel, OnnxModel
from digitlab.nn import calibration
from digitlab.training.config import TrainConfig


@pytest.fixture(scope="module")
def run(mnist, tmp_path_factory):
    from digitlab.experiments.pipeline import train

    config = TrainConfig(model="cnn", epochs=2, subset=5000)
    return train(config, data=mnist, out=tmp_path_factory.mktemp("runs") / "cnn", verbose=0)


TINY = TrainConfig(model="mlp", epochs=1, subset=1000)


@pytest.fixture(scope="module")
def tiny(mnist, tmp_path_factory):
    """A one-epoch MLP on 1,000 digits: a model to export and check, quickly."""
    from digitlab.experiments.pipeline import train

    return train(TINY, data=mnist, out=tmp_path_factory.mktemp("runs") / "mlp", verbose=0)


def test_onnx_matches_keras_and_carries_calibration(run, mnist):
    path = export(run, "onnx")
    onnx_model, keras_model = OnnxModel(path), KerasModel(run / "model.keras")
    x = mnist.x_test[:2000]
    assert np.abs(onnx_model.probabilities(x) - keras_model.probabilities(x)).max() <= 1e-5
    serving = json.loads((run / "serving.json").read_text())
    assert onnx_model.info["temperature"] == pytest.approx(serving["temperature"])
    assert onnx_model.info["threshold"] == pytest.approx(serving["threshold"])
    assert onnx_model.info["metrics"]["test_accuracy"] > 0.9


def test_savedmodel_export_gives_the_same_probabilities(run, mnist):
    from digitlab.nn.backend import tf

    path = export(run, "savedmodel", out=run / "saved")
    served = tf.saved_model.load(str(path))
    x = mnist.x_test[:256]
    got = served.serve(tf.constant(x)).numpy()
    np.testing.assert_allclose(got, KerasModel(run / "model.keras").probabilities(x), atol=1e-5)


@pytest.mark.parametrize("fmt", ["onnx", "savedmodel"])
def test_every_export_is_checked_on_validation_digits(tiny, mnist, data_dir, tmp_path, fmt):
    from digitlab.io.export import CHECK_DIGITS, check, digits_to_check
    from digitlab.nn.models import load as load_keras

    notes: list[str] = []
    path = export(tiny, fmt, out=tmp_path / "exported", data_dir=data_dir, notes=notes)
    name = {"onnx": "ONNX", "savedmodel": "SavedModel"}[fmt]
    assert notes and notes[-1].startswith(f"{name} export checked against Keras on 1,000 MNIST validation digits:")
    # The digits are the validation split's, and on them the export gives the model's probabilities.
    digits, on = digits_to_check(data_dir)
    assert on == "MNIST validation digits" and len(digits) == CHECK_DIGITS == 1000
    np.testing.assert_array_equal(digits, mnist.x_val[:CHECK_DIGITS])
    result = check(load_keras(tiny / "model.keras"), path, fmt, digits, on)
    assert result.passed and result.images == 1000 and result.difference <= 1e-5


def test_an_export_with_tampered_weights_fails_the_check(tiny, data_dir, tmp_path):
    import onnx
    from onnx import numpy_helper

    from digitlab.io.export import check, digits_to_check
    from digitlab.nn.models import load as load_keras

    model, (digits, on) = load_keras(tiny / "model.keras"), digits_to_check(data_dir)
    path = export(tiny, "onnx", out=tmp_path / "m.onnx", data_dir=data_dir)
    assert check(model, path, "onnx", digits, on).passed
    proto = onnx.load(str(path))
    weights = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))  # the first layer's kernel
    weights.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights) * 1.01, weights.name))
    onnx.save(proto, str(path))
    tampered = check(model, path, "onnx", digits, on)
    assert not tampered.passed and tampered.difference > 1e-4, tampered

    saved = export(tiny, "savedmodel", out=tmp_path / "saved", data_dir=data_dir)
    assert check(model, saved, "savedmodel", digits, on).passed
    model.layers[-1].kernel.assign(model.layers[-1].kernel * 1.01)  # the SavedModel no longer is this model
    changed = check(model, saved, "savedmodel", digits, on)
    assert not changed.passed and changed.difference > 1e-4, changed


def test_without_mnist_the_check_says_it_used_noise(tiny, tmp_path):
    notes: list[str] = []
    export(tiny, "onnx", out=tmp_path / "m.onnx", data_dir=tmp_path / "no-mnist-here", notes=notes)
    assert "checked against Keras on 64 images of uniform noise, not digits (MNIST not found in" in notes[-1]


def test_an_export_killed_mid_write_leaves_a_temp_file_the_next_export_removes(tiny, data_dir, tmp_path):
    out = tmp_path / "exports" / "model.onnx"
    args = [sys.executable, "-m", "digitlab.cli", "export", str(tiny), "--out", str(out), "--data-dir", str(data_dir)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not (hidden := [p for p in out.parent.glob(".*")] if out.parent.is_dir() else []):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.005)
    proc.kill()  # SIGKILL while the export is being written: no chance to clean up
    proc.wait()
    assert [p.name for p in out.parent.iterdir()] == [hidden[0].name] and not out.exists()
    assert hidden[0].name.startswith(".digitlab-tmp-")  # named so that it is known for what it is
    export(tiny, "onnx", out=out, data_dir=data_dir)  # the same command again
    assert [p.name for p in out.parent.iterdir()] == ["model.onnx"]


def test_evaluate_grades_an_onnx_file_digitlab_exported(tiny, mnist, data_dir, tmp_path, monkeypatch):
    """An exported .onnx (the shipped model is one) is graded like a run, with its own calibration
    left as it is: nothing is written beside it (the shipped one sits in site-packages)."""
    from digitlab.evaluation import evaluate
    from digitlab.evaluation.evaluate import evaluate_file
    from digitlab.training.runs import Run

    monkeypatch.setattr(evaluate, "ROBUSTNESS_N", 5)  # the suite is not what is tested here

    path = export(tiny, "onnx", out=tmp_path / "model" / "tiny.onnx", data_dir=data_dir)
    folder = evaluate_file(path, out=tmp_path / "graded", data_dir=data_dir)
    run = Run.open(folder)
    assert (run.record.kind, run.record.status, run.record.source) == ("export", "completed", str(path))
    right = OnnxModel(path).probabilities(mnist.x_test).argmax(1) == mnist.y_test
    assert run.read_metrics()["test_accuracy"] == pytest.approx(right.mean())
    assert run.read_serving()["calibrated_on"] == "the validation split (10,000)"
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.onnx"]
    # The shipped model is no longer refused as "neither a run folder nor a model file": it goes on
    # to read MNIST (here from a folder without it: grading it whole takes half a minute).
    from digitlab.io.native import DEFAULT_MODEL

    shipped = digitlab("evaluate", str(DEFAULT_MODEL), "--out", str(tmp_path / "d"), "--data-dir", str(tmp_path))
    assert shipped.returncode == 2 and "MNIST not found" in shipped.stderr, shipped.stderr


def test_serving_threshold_is_chosen_on_validation(tiny, mnist):
    """serving.json holds the calibration fitted on the run's validation digits: the test
    digits would give another, so a calibration fitted on test could not pass."""
    serving = json.loads((tiny / "serving.json").read_text())
    model = KerasModel(tiny / "model.keras")
    used = mnist.subset(TINY.subset)  # the split the run was trained, selected and calibrated on
    on_val = calibration.fit(used.y_val, model.probabilities(used.x_val))
    on_test = calibration.fit(mnist.y_test, model.probabilities(mnist.x_test))
    assert serving["val_images"] == len(used.y_val) == 200
    assert on_test["threshold"] != pytest.approx(on_val["threshold"], rel=1e-2)  # the two can be told apart
    for key in ("temperature", "threshold", "number_threshold"):
        assert serving[key] == pytest.approx(on_val[key], rel=1e-4), key


def test_predict_cli_json_show_and_bad_files(run, mnist, tmp_path):
    onnx = export(run, "onnx", out=tmp_path / "m.onnx")
    files = []
    for d in (3, 8):
        i = int(np.flatnonzero(mnist.y_test == d)[0])
        path = tmp_path / f"digit{d}.jpg"
        Image.fromarray(((1 - np.kron(mnist.x_test[i].squeeze(), np.ones((6, 6)))) * 255).astype(np.uint8)).save(path)
        files.append(path)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    result = digitlab(
        "predict",
        *map(str, files),
        str(bad),
        "--model",
        str(onnx),
        "--json",
        "--top-k",
        "2",
        "--show",
        str(tmp_path / "seen"),
    )
    assert result.returncode == 2  # one file was bad
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a.get("digit") for a in answers[:2]] == [3, 8]
    assert len(answers[0]["probabilities"]) == 10 and len(answers[0]["top_k"]) == 2
    assert answers[2]["file"] == str(bad) and "not a readable image" in answers[2]["error"]
    with Image.open(answers[0]["show"]) as seen:
        assert seen.size == (28, 28)
    plain = digitlab("predict", str(files[0]), "--model", str(onnx))
    assert plain.returncode == 0 and plain.stdout.startswith(f"{files[0]}: 3 (")


def test_predict_reads_many_files_on_every_core_in_their_order(mnist, tmp_path):
    # The shipped model, 40 photos and a bad file among them: two reading processes give each
    # file's answer in the files' order, the bad one its error line, as one process does.
    from digitlab.data import synth

    photos, labels = synth.render("photo", mnist.x_test.reshape(-1, 28, 28), mnist.y_test, 40, seed=9)
    files = []
    for k, data in enumerate(photos):
        files.append(tmp_path / f"{k:02d}.jpg")
        files[-1].write_bytes(data)
    files.insert(17, tmp_path / "bad.jpg")
    files[17].write_bytes(b"not an image")
    runs = {w: digitlab("predict", *map(str, files), "--json", "--workers", w) for w in ("1", "2")}
    answers = {}
    for w, result in runs.items():
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        answers[w] = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["file"] for a in answers["2"]] == list(map(str, files))
    assert "not a readable image" in answers["2"][17]["error"]
    keys = ("digit", "box", "error")
    assert [[a.get(k) for k in keys] for a in answers["2"]] == [[a.get(k) for k in keys] for a in answers["1"]]
    # one ONNX Runtime thread a process sums in another order than two: the last digits may differ
    confidences = [[a.get("confidence") or 0.0 for a in answers[w]] for w in ("1", "2")]
    assert confidences[1] == pytest.approx(confidences[0], abs=1e-4)
    read = [a.get("digit") for a in answers["2"][:17] + answers["2"][18:]]
    assert np.mean(np.array(read) == labels) > 0.9  # and the answers are readings, not placeholders


def test_shipped_model_works_without_training_and_without_tensorflow(mnist, tmp_path):
    i = int(np.flatnonzero(mnist.y_test == 5)[0])
    path = tmp_path / "five.png"
    Image.fromarray((mnist.x_test[i].squeeze() * 255).astype(np.uint8)).resize((200, 200)).save(path)
    code = (
        "import sys; from digitlab.read import load, predict_image; "
        f"a = predict_image(load(), {str(path)!r}); "
        "assert 'tensorflow' not in sys.modules, 'ONNX inference imported TensorFlow'; "
        "assert 'sklearn' not in sys.modules, 'reading a digit imported scikit-learn'; print(a['digit'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "5"
    assert load().info["metrics"]["test_accuracy"] > 0.99


def test_predict_user_errors(tmp_path):
    for args, message in (
        (["predict", str(tmp_path / "missing.png")], "no such file"),
        (["predict", "x.png", "--model", str(tmp_path / "nope.onnx")], "no model at"),
        (["predict", "x.png", "--top-k", "0"], "--top-k must be between 1 and 10"),
        (["predict", "x.png", "--workers", "0"], "--workers must be between 1 and 64"),
        (["export", str(tmp_path), "--format", "tflite"], "unknown format 'tflite'"),
    ):
        result = digitlab(*args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_bad_model_file_is_one_line_in_every_command(run, data_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "run.json").write_text((run / "run.json").read_text())
    (broken / "model.keras").write_bytes((run / "model.keras").read_bytes()[:2000])  # cut short, as by a full disk
    image = tmp_path / "x.png"
    Image.new("L", (28, 28)).save(image)
    for args in (
        ["evaluate", str(broken), "--data-dir", str(data_dir)],
        ["export", str(broken)],
        ["ensemble", str(run), str(broken), "--out", str(tmp_path / "ens"), "--data-dir", str(data_dir)],
        ["predict", str(image), "--model", str(broken / "model.keras")],
    ):
        result = digitlab(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert f"cannot load Keras model {broken / 'model.keras'}" in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def _onnx_with(tmp_path, name: str, metadata: dict | None = None, classes: int = 10, input_shape=(None, 28, 28, 1)):
    """The shipped model with other metadata, or a tiny softmax model of another shape."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from digitlab.io.native import DEFAULT_MODEL

    if metadata is not None:
        proto = onnx.load(str(DEFAULT_MODEL))
        for entry in proto.metadata_props:
            if entry.key in metadata:
                entry.value = metadata[entry.key]
    else:
        size = int(np.prod([d for d in input_shape if d]))
        weights = numpy_helper.from_array(np.zeros((size, classes), np.float32), "w")
        shape = numpy_helper.from_array(np.array([-1, size], np.int64), "shape")
        nodes = [
            helper.make_node("Reshape", ["image", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        ]
        graph = helper.make_graph(
            nodes,
            "tiny",
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(input_shape))],
            [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [None, classes])],
            [weights, shape],
        )
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / f"{name}.onnx"
    onnx.save(proto, str(path))
    return path


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("zero-temperature", {"metadata": {"digitlab.temperature": "0"}}, "temperature must be a positive number"),
        ("text-threshold", {"metadata": {"digitlab.threshold": '"high"'}}, "threshold must be a number"),
        ("not-json", {"metadata": {"digitlab.temperature": "{oops"}}, "is not JSON"),
        ("three-classes", {"classes": 3}, "not (N, 10) probabilities"),
        # Without digitlab's metadata an ONNX file is a model trained elsewhere (foreign.py): a
        # (784,) input would be adapted, a 32x32 one cannot be.
        ("big-input", {"input_shape": (None, 32, 32, 1)}, "digitlab adapts one batch of"),
    ],
)
def test_malformed_onnx_models_are_one_line(tmp_path, name, kwargs, message):
    model = _onnx_with(tmp_path, name, **kwargs)
    image = tmp_path / "x.png"
    Image.new("L", (28, 28)).save(image)
    result = digitlab("predict", str(image), "--model", str(model))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_test_is_rescored_with_the_calibration_as_it_was(tiny, data_dir):
    """evaluation.test() scores the test split with the stored calibration: serving.json is
    neither refitted nor rewritten, and the figures are the ones evaluate() wrote."""
    from digitlab.evaluation import evaluate as evaluation
    from digitlab.training.runs import Run

    run = Run.open(tiny)
    before, stamp = run.serving.read_bytes(), run.serving.stat().st_mtime_ns
    written = run.read_metrics()
    data = evaluation.load_split(run.record.data, data_dir)
    again = evaluation.test(run, data, evaluation.reader(run), run.read_serving())
    assert run.serving.read_bytes() == before and run.serving.stat().st_mtime_ns == stamp
    for key in ("test_accuracy", "test_loss", "test_errors"):
        assert again[key] == pytest.approx(written[key], abs=1e-9), key
    assert again["calibration"]["ece"] == pytest.approx(written["calibration"]["ece"], abs=1e-9)
