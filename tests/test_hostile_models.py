"""Model files are untrusted: metadata nested 100,000 deep or holding a 5,000-digit number, an ONNX
graph that loops for ever or asks for 4 TiB, a pickle named model.keras. Each ends in one `error:`
line naming the file: never a traceback, a RecursionError or a hang. The graphs are built here
with the onnx helper API."""

from __future__ import annotations

import pickle
import time
import zipfile

import numpy as np
import onnx
import pytest
from conftest import digitlab
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from digitlab.errors import DigitlabError
from digitlab.io import native, runtime
from digitlab.training.config import TrainConfig
from digitlab.training.runs import Run

DEEP = "[" * 100_000 + "]" * 100_000
DIGITS = "1" * 5_000
OWN = {"digitlab.temperature": "1.0", "digitlab.threshold": "0.0", "digitlab.name": '"hostile"'}


def graph(hostile: list, inits: list, extra: str) -> onnx.ModelProto:
    """image (N, 28, 28, 1) -> softmax(flat @ 0 + 0 * extra) (N, 10): a digit model's shape, with
    the `hostile` nodes' scalar `extra` computed from the image (so nothing is folded at load)."""
    flat = numpy_helper.from_array(np.array([-1, 784], np.int64), "flat_shape")
    weights = numpy_helper.from_array(np.zeros((784, 10), np.float32), "w")
    zero = numpy_helper.from_array(np.zeros(10, np.float32), "zero")
    nodes = [
        helper.make_node("Reshape", ["image", "flat_shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["scores"]),
        helper.make_node("ReduceSum", ["flat"], ["ink"], keepdims=0),
        *hostile,
        helper.make_node("Mul", [extra, "zero"], ["nothing"]),
        helper.make_node("Add", ["scores", "nothing"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "hostile",
            [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 28, 28, 1])],
            [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])],
            [flat, weights, zero, *inits],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    for key, value in OWN.items():  # digitlab's metadata: read as digitlab's own, one image at a time
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    return model


def endless() -> onnx.ModelProto:
    """A Loop without a trip count whose condition stays true."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["go"], ["go_on"]), helper.make_node("Add", ["n", "one"], ["n_next"])],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("go", TensorProto.BOOL, []),
            helper.make_tensor_value_info("n", TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("go_on", TensorProto.BOOL, []),
            helper.make_tensor_value_info("n_next", TensorProto.FLOAT, []),
        ],
        [numpy_helper.from_array(np.array(1.0, np.float32), "one")],
    )
    loop = helper.make_node("Loop", ["", "true", "ink"], ["count"], body=body)
    return graph([loop], [numpy_helper.from_array(np.array(True), "true")], "count")


def enormous() -> onnx.ModelProto:
    """The image's ink expanded to 2^20 x 2^20 floats: 4 TiB asked at run time."""
    shape = numpy_helper.from_array(np.array([2**20, 2**20], np.int64), "huge")
    nodes = [
        helper.make_node("Expand", ["ink", "huge"], ["everywhere"]),
        helper.make_node("ReduceSum", ["everywhere"], ["total"], keepdims=0),
    ]
    return graph(nodes, [shape], "total")


def with_metadata(key: str, value: str) -> onnx.ModelProto:
    proto = onnx.load(str(native.DEFAULT_MODEL))
    (entry,) = [e for e in proto.metadata_props if e.key == key]
    entry.value = value
    return proto


@pytest.fixture(scope="module")
def digit(mnist, tmp_path_factory):
    path = tmp_path_factory.mktemp("png") / "seven.png"
    i = int(np.flatnonzero(mnist.y_test == 7)[0])
    Image.fromarray((255 - mnist.x_test[i].squeeze() * 255).astype(np.uint8)).resize((112, 112)).save(path)
    return path


def one_line(result, *expected: str) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr[-3000:]
    for part in expected:
        assert part in result.stderr, result.stderr
    return result.stderr


@pytest.mark.parametrize(
    ("proto", "expected"),
    [
        (lambda: with_metadata("digitlab.temperature", DEEP), "metadata digitlab.temperature nests JSON more than 64"),
        (lambda: with_metadata("digitlab.metrics", DIGITS), "metadata digitlab.metrics holds a number of 5,000 digits"),
    ],
    ids=["100000-deep", "5000-digits"],
)
@pytest.mark.parametrize("command", ["predict", "serve"])
def test_hostile_onnx_metadata_is_one_line(proto, expected, command, digit, tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save(proto(), str(path))
    args = ["predict", str(digit), "--model", str(path)] if command == "predict" else ["serve", "--model", str(path)]
    one_line(digitlab(*args, timeout=60), f"error: {path}: {expected}")


def test_an_onnx_graph_that_loops_for_ever_is_stopped_at_its_deadline(digit, tmp_path):
    path = tmp_path / "endless.onnx"
    onnx.save(endless(), str(path))
    t0 = time.monotonic()
    result = digitlab("predict", str(digit), "--model", str(path), timeout=120)
    deadline = runtime.RUN_DEADLINE_S + runtime.RUN_DEADLINE_PER_IMAGE_S  # one image
    one_line(result, f"error: {path} did not read 1 image(s) within {deadline:.1f} s", "stopped")
    assert time.monotonic() - t0 < deadline + 30  # the deadline, and starting Python; not a hang


def test_evaluate_stops_an_endless_graph_too_and_records_the_run_failed(tmp_path, data_dir, monkeypatch):
    path = tmp_path / "endless.onnx"
    onnx.save(endless(), str(path))
    from digitlab.evaluation.evaluate import evaluate_file

    monkeypatch.setattr(runtime, "RUN_DEADLINE_PER_IMAGE_S", 0.0)  # a chunk's deadline as one image's: quicker
    with pytest.raises(DigitlabError, match="did not read 64 image"):
        evaluate_file(path, out=tmp_path / "evaluated", data_dir=data_dir)
    assert Run.open(tmp_path / "evaluated").record.status == "failed"


def test_an_onnx_graph_asking_for_4_tib_is_one_line(digit, tmp_path):
    path = tmp_path / "enormous.onnx"
    onnx.save(enormous(), str(path))
    one_line(
        digitlab("predict", str(digit), "--model", str(path), timeout=60),
        f"error: {path} failed reading digits: it asks for more memory than the 2 GiB digitlab allows",
        "4398046511104",
    )


@pytest.mark.parametrize("graph", ["endless", "enormous"])
def test_serve_refuses_a_graph_that_cannot_run_before_it_listens(graph, tmp_path):
    path = tmp_path / f"{graph}.onnx"
    onnx.save(endless() if graph == "endless" else enormous(), str(path))
    result = digitlab("serve", "--model", str(path), "--port", "8799", timeout=120)
    expected = "did not read 1 image(s)" if graph == "endless" else "asks for more memory"
    one_line(result, f"error: {path}", expected)
    assert "Application startup" not in result.stderr


def test_a_keras_file_whose_config_nests_100000_deep_is_one_line(digit, tmp_path):
    path = tmp_path / "deep.keras"  # a model trained elsewhere: its config is read before Keras
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", '{"class_name": "Functional", "config": ' + DEEP + "}")
        archive.writestr("metadata.json", "{}")
    one_line(
        digitlab("predict", str(digit), "--model", str(path), timeout=120),
        f"cannot load Keras model {path}: not a Keras model file (its config.json nests JSON more than 64",
    )


def test_a_pickle_named_model_keras_in_a_run_folder_is_not_a_keras_file(tmp_path, data_dir):
    run = Run.create(tmp_path / "run", config=TrainConfig.for_model("mlp", epochs=1))
    run.model.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    result = digitlab("evaluate", str(run.path), "--data-dir", str(data_dir), timeout=300)
    one_line(result, f"cannot load Keras model {run.model}: not a Keras model file (a .keras file is a zip archive")
    assert "File not found" not in result.stderr


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("run.json", DEEP, "the run record is damaged"),
        ("model.keras.serving.json", '{"temperature": ' + DIGITS + "}", "holds a number of 5,000 digits"),
    ],
)
def test_hostile_files_beside_a_model_are_one_line(name, text, expected, tmp_path, data_dir, digit):
    """A run's record, and the calibration evaluate writes beside a model file."""
    if name == "run.json":
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / name).write_text(text)
        args = ["evaluate", str(tmp_path / "run"), "--data-dir", str(data_dir)]
    else:
        model = tmp_path / "model.keras"  # a foreign file; its calibration is read first
        model.write_bytes(b"")
        (tmp_path / name).write_text(text)
        args = ["predict", str(digit), "--model", str(model)]
    one_line(digitlab(*args, timeout=120), expected)
