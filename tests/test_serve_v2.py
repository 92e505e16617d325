"""The Open Inference Protocol (KServe v2) on a real `digitlab serve`, through a client digitlab
does not write: tritonclient's HTTP client, as a platform or a user of one would call it."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from digitlab.io.load import load
from digitlab.nn.calibration import scale_temperature
from digitlab.serve.app import running


@pytest.fixture(scope="module")
def server():
    with running() as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    c = triton.InferenceServerClient(server.removeprefix("http://"))
    yield c
    c.close()


def infer(client, images: np.ndarray, binary: bool = True, binary_output: bool | None = None) -> np.ndarray:
    tensor = triton.InferInput("images", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images, binary_data=binary)
    outputs = None
    if binary_output is not None:  # else tritonclient asks for every output as binary
        outputs = [triton.InferRequestedOutput("probabilities", binary_data=binary_output)]
    result = client.infer("digitlab", [tensor], outputs=outputs)
    return result.as_numpy("probabilities")


def test_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digitlab")
    assert not client.is_model_ready("mnist")  # one model here, named digitlab
    meta = client.get_model_metadata("digitlab")
    assert meta["name"] == "digitlab" and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 28, 28, 1]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}]
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]


def test_infer_matches_v1_for_the_same_pixels(client, server, mnist):
    """v1 prepares an image and reports the 28x28 it fed the model (`input28`) and the calibrated
    probabilities; v2 given those pixels answers the same, up to input28's rounding to 0-255."""
    picks = [int(np.flatnonzero(mnist.y_test == d)[5]) for d in range(10)]
    pixels = [(mnist.x_test[i].squeeze() * 255).tolist() for i in picks]
    v1 = [httpx.post(server + "/v1/predict", json={"pixels": p}) for p in pixels]
    assert all(r.status_code == 200 for r in v1)
    seen = np.stack([np.array(r.json()["input28"], np.float32) / 255 for r in v1])[..., None]
    expected = np.array([r.json()["probabilities"] for r in v1])
    for binary, binary_output in [(True, None), (False, False), (True, False), (False, True)]:
        got = infer(client, seen, binary, binary_output)
        assert got.shape == (10, 10) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=1e-3)
        assert list(got.argmax(axis=1)) == [r.json()["top_k"][0]["digit"] for r in v1] == list(range(10))


def test_infer_gives_the_calibrated_probabilities(client):
    """On ambiguous inputs, where calibration moves the probabilities most, v2 answers exactly
    the model's probabilities scaled by its temperature."""
    images = np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32) ** 4
    model = load()
    expected = scale_temperature(model.probabilities(images), model.info["temperature"])
    uncalibrated = model.probabilities(images)
    got = infer(client, images)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(got - uncalibrated).max() > 1e-3  # the check above can tell the two apart


@pytest.fixture(scope="module")
def keras_run(mnist, tmp_path_factory):
    """A run folder with a model.keras, briefly trained: it need only answer, not read well."""
    from digitlab.experiments.pipeline import train
    from digitlab.training.config import TrainConfig

    config = TrainConfig(model="mlp", epochs=1, subset=2000)
    out = tmp_path_factory.mktemp("runs") / "mlp"
    return train(config, data=mnist, out=out, evaluate_after=False, verbose=0)


def post_binary(url: str, images: np.ndarray) -> np.ndarray:
    """One inference request in the binary tensor extension, sent with httpx: tritonclient's
    client runs on gevent, which cannot be shared between threads."""
    tensor = {"name": "images", "datatype": "FP32", "shape": list(images.shape)}
    header = json.dumps(
        {
            "inputs": [tensor | {"parameters": {"binary_data_size": images.nbytes}}],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    r = httpx.post(
        url + "/v2/models/digitlab/infer",
        content=header + images.astype("<f4").tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    split = int(r.headers["inference-header-content-length"])
    return np.frombuffer(r.content[split:], "<f4").reshape(json.loads(r.content[:split])["outputs"][0]["shape"])


def test_concurrent_batches_on_a_keras_model_each_get_their_own_answer(keras_run, mnist):
    """Batches over 512 images go through Keras' predict(), which two worker threads must not
    enter at once: four clients sending at the same time each get what they get alone."""
    batches = [mnist.x_test[600 * i : 600 * (i + 1)] for i in range(4)]
    with running(keras_run) as url:
        assert httpx.get(url + "/v2/models/digitlab").json()["platform"] == "tensorflow_keras"
        rounds = []
        for _ in range(3):  # the first round is also the model's first predict(), made in several threads
            with ThreadPoolExecutor(len(batches)) as pool:
                rounds.append(list(pool.map(post_binary, [url] * len(batches), batches)))
        alone = [post_binary(url, images) for images in batches]
    for together in rounds:
        for got, expected in zip(together, alone, strict=True):
            assert got.shape == (600, 10)
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert len({tuple(a.argmax(axis=1)[:50]) for a in alone}) == len(batches)  # four batches told apart


@pytest.mark.parametrize(
    ("shape", "datatype", "message"),
    [
        ([1, 28, 28], "FP32", "shape must be [N, 28, 28, 1]"),
        ([1, 784], "FP32", "shape must be [N, 28, 28, 1]"),
        ([1, 28, 28, 1], "FP64", "must be FP32"),
        ([1, 28, 28, 1], "INT32", "must be FP32"),
    ],
)
def test_bad_tensors_get_a_4xx_through_the_client(client, shape, datatype, message):
    tensor = triton.InferInput("images", shape, datatype)
    tensor.set_data_from_numpy(np.zeros(shape, {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32}[datatype]))
    with pytest.raises(InferenceServerException) as refused:
        client.infer("digitlab", [tensor])
    assert refused.value.status() == "400" and message in refused.value.message()


def test_unknown_model_is_a_404(client):
    tensor = triton.InferInput("images", [1, 28, 28, 1], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 28, 28, 1), np.float32))
    with pytest.raises(InferenceServerException) as refused:
        client.infer("resnet50", [tensor])
    assert refused.value.status() == "404" and "serves 'digitlab'" in refused.value.message()


ONE = {"name": "images", "datatype": "FP32", "shape": [1, 28, 28, 1]}


def request(outputs: list | None = None, **tensor) -> bytes:
    """An inference request with one input tensor: `ONE` with `tensor`'s fields."""
    body: dict = {"inputs": [ONE | tensor]}
    if outputs is not None:
        body["outputs"] = outputs
    return json.dumps(body).encode()


BINARY = request(parameters={"binary_data_size": 3136})
HUGE = request(data="HUGE").replace(b'"HUGE"', b"[1" + b"0" * 400 + b"]")  # 10**400: past any float

BAD_REQUESTS = {
    "not-json": (b"{not json", {}, "not valid JSON"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, {}, "nests too deep"),
    "no-input": (b'{"inputs": []}', {}, "one input tensor"),
    "name": (request(name="x", data=[0] * 784), {}, "named 'images'"),
    "short": (request(data=[0] * 783), {}, "must hold 784 numbers"),
    "strings": (request(data=["0"] * 784), {}, "must hold 784 numbers"),
    "0-255": (request(data=[255] * 784), {}, "lie in 0-1"),
    "nan": (request(data=[float("nan")] * 784), {}, "finite"),
    "huge-number": (HUGE, {}, "784 numbers"),
    "too-many": (request(shape=[5000, 28, 28, 1], data=[]), {}, "N in 1-1024"),
    "bad-output": (request([{"name": "logits"}], data=[0] * 784), {}, "one output, 'probabilities'"),
    "binary-size": (BINARY + b"\0" * 100, {"Inference-Header-Content-Length": str(len(BINARY))}, "binary_data_size"),
    "header-length": (b"{}", {"Inference-Header-Content-Length": "99"}, "Inference-Header-Content-Length"),
}


@pytest.mark.parametrize(("body", "headers", "message"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_infer_requests_get_a_clear_400(server, body, headers, message):
    r = httpx.post(server + "/v2/models/digitlab/infer", content=body, headers=headers)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]
