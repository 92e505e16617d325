"""Export (ONNX checked against Keras, SavedModel) and `digitlab predict` on real image files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import digitlab
from PIL import Image

from digitlab.config import TrainConfig
from digitlab.evaluation import DECLINE_RATE
from digitlab.export import export
from digitlab.predict import KerasModel, OnnxModel, load


@pytest.fixture(scope="module")
def run(mnist, tmp_path_factory):
    from digitlab.training import train

    config = TrainConfig(model="cnn", epochs=2, subset=5000)
    return train(config, data=mnist, out=tmp_path_factory.mktemp("runs") / "cnn", verbose=0)


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
    from digitlab.backend import tf

    path = export(run, "savedmodel", out=run / "saved")
    served = tf.saved_model.load(str(path))
    x = mnist.x_test[:256]
    got = served.serve(tf.constant(x)).numpy()
    np.testing.assert_allclose(got, KerasModel(run / "model.keras").probabilities(x), atol=1e-5)


def test_serving_threshold_is_chosen_on_validation(run):
    serving = json.loads((run / "serving.json").read_text())
    # DECLINE_RATE of the validation digits fall under the threshold (ties aside).
    assert serving["val_declined_fraction"] == pytest.approx(DECLINE_RATE, abs=0.005)
    assert serving["val_nll_after"] <= serving["val_nll_before"] + 1e-9


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


def test_shipped_model_works_without_training_and_without_tensorflow(mnist, tmp_path):
    i = int(np.flatnonzero(mnist.y_test == 5)[0])
    path = tmp_path / "five.png"
    Image.fromarray((mnist.x_test[i].squeeze() * 255).astype(np.uint8)).resize((200, 200)).save(path)
    code = (
        "import sys; from digitlab.predict import load, predict_image; "
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

    from digitlab.predict import DEFAULT_MODEL

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
