"""The REST API on the shipped model: real requests, real images, every bad input a clear 4xx."""

from __future__ import annotations

import base64
import contextlib
import io
import re
import socket

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digitlab.serve.app import MAX_BATCH, create_app, running

JSON = {"content-type": "application/json"}


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(max_upload=1_000_000)) as c:
        yield c


@pytest.fixture(scope="module")
def digits(mnist):
    """Ten MNIST test digits, one of each class, as dark-on-light 140x140 PNGs."""
    picks = [int(np.flatnonzero(mnist.y_test == d)[3]) for d in range(10)]
    return [png(((1 - np.kron(mnist.x_test[i].squeeze(), np.ones((5, 5)))) * 255).astype(np.uint8)) for i in picks]


def test_health_and_model_card(client):
    assert client.get("/healthz").json()["status"] == "ok"
    card = client.get("/v1/model").json()
    assert card["format"] == "onnx" and card["metrics"]["test_accuracy"] > 0.99
    assert 0 < card["threshold"] < 1 and card["temperature"] > 0 and card["command"].startswith("digitlab train")


def test_multipart_upload_reads_each_digit(client, digits):
    for d, image in enumerate(digits):
        r = client.post("/v1/predict", files={"file": (f"{d}.png", image, "image/png")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["digit"] == d, body
        assert len(body["probabilities"]) == 10 and abs(sum(body["probabilities"]) - 1) < 1e-4
        assert np.array(body["input28"]).shape == (28, 28)


def test_json_base64_and_pixels(client, digits, mnist):
    r = client.post("/v1/predict", json={"image": "data:image/png;base64," + base64.b64encode(digits[7]).decode()})
    assert r.status_code == 200 and r.json()["digit"] == 7
    index = int(np.flatnonzero(mnist.y_test == 4)[0])
    pixels = (mnist.x_test[index].squeeze() * 255).round().tolist()
    r = client.post("/v1/predict", json={"pixels": pixels})
    assert r.status_code == 200 and r.json()["digit"] == 4


def test_batch_endpoint_keeps_going_past_a_bad_image(client, digits):
    files = [("files", (f"{d}.png", digits[d], "image/png")) for d in (1, 2)] + [
        ("files", ("x.png", b"junk", "image/png"))
    ]
    results = client.post("/v1/predict/batch", files=files).json()["results"]
    assert [r.get("digit") for r in results[:2]] == [1, 2]
    assert "not a readable image" in results[2]["error"]


def test_blank_image_is_declined_not_guessed(client):
    body = client.post("/v1/predict", files={"file": ("blank.png", png(np.full((64, 64), 255, np.uint8)))}).json()
    assert body["digit"] is None and body["reason"].startswith("no ink")


def test_number_mode(client, mnist):
    picks = [int(np.flatnonzero(mnist.y_test == d)[1]) for d in (2, 0, 2, 6)]
    strip = np.concatenate([np.pad(mnist.x_test[i].squeeze(), ((0, 0), (5, 5))) for i in picks], axis=1)
    image = png(((1 - np.kron(strip, np.ones((4, 4)))) * 255).astype(np.uint8))
    body = client.post("/v1/predict?number=true", files={"file": ("n.png", image)}).json()
    assert body["number"] == "2026", body


BOMB = io.BytesIO()
Image.new("L", (9000, 9000)).save(BOMB, format="PNG")


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "unsupported content type"),
        ({"files": {"file": ("a.png", b"not an image")}}, 422, "not a readable image"),
        ({"files": {"file": ("a.png", png(np.zeros((40, 40), np.uint8))[:50])}}, 422, "not a readable image"),
        ({"files": {"file": ("bomb.png", BOMB.getvalue())}}, 422, "too large"),
        ({"files": {"file": ("big.bin", b"\0" * 1_200_000)}}, 413, "digitlab serve --max-upload"),
        ({"files": {"note": (None, "no file here")}}, 422, "no file in the upload"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "not valid JSON"),
        ({"json": {"image": "@@@not base64@@@"}}, 422, "not valid base64"),
        ({"json": {"pixels": [[0] * 28] * 27 + [[0] * 27]}}, 422, "rectangular"),
        ({"json": {"pixels": [[0] * 3] * 3}}, 422, "between 8x8"),
        ({"json": {"pixels": [[300] * 28] * 28}}, 422, "0-255"),
        (
            {
                "content": b'{"pixels": [' + b",".join([b"[" + b",".join([b"NaN"] * 28) + b"]"] * 28) + b"]}",
                "headers": {"content-type": "application/json"},
            },
            422,
            "finite",
        ),
        ({"json": [1, 2, 3]}, 422, "JSON object"),
        # Found by fuzzing: each was a 500 once.
        ({"content": b'{"pixels": [[1' + b"0" * 400 + b"]]}", "headers": JSON}, 422, "too large for a float"),
        ({"content": b'{"pixels": [[' + b"9" * 5000 + b"]]}", "headers": JSON}, 400, "number too long"),
        ({"content": b"[" * 100_000 + b"]" * 100_000, "headers": JSON}, 400, "nests too deep"),
        ({"content": iter([b"[" * 300_000] * 4), "headers": JSON}, 413, "--max-upload"),  # chunked: no Content-Length
        # Content-Length read strictly (5,000 digits were a 500 from `int`; a real server's h11 refuses them itself)
        ({"content": b"{}", "headers": JSON | {"content-length": "9" * 5000}}, 400, "Content-Length"),
        ({"content": b"{}", "headers": JSON | {"content-length": "-2"}}, 400, "ASCII digits"),
        # v1 takes 0-255: the usual x/255 array read as a blank image once (200, "no ink")
        ({"json": {"pixels": (np.arange(784).reshape(28, 28) / 783).tolist()}}, 422, "multiply them by 255"),
    ],
    ids=[
        "wrong-type",
        "not-image",
        "truncated",
        "bomb",
        "oversize",
        "no-file",
        "bad-json",
        "bad-base64",
        "ragged",
        "tiny",
        "range",
        "nan",
        "not-object",
        "huge-number",
        "5000-digits",
        "deep-nesting",
        "chunked-oversize",
        "content-length-5000-digits",
        "content-length-negative",
        "pixels-0-1",
    ],
)
def test_bad_requests_get_a_clear_4xx(client, kwargs, status, message):
    r = client.post("/v1/predict", **kwargs)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_bad_query_and_batch_size(client, digits):
    assert client.post("/v1/predict?top_k=0", files={"file": ("a.png", digits[0])}).status_code == 422
    for top_k in (0, -1):
        r = client.post(f"/v1/predict/batch?top_k={top_k}", files=[("files", ("a.png", digits[0]))])
        assert r.status_code == 422 and "top_k" in r.json()["error"]
    assert "top_k" in client.post("/v1/predict?top_k=abc", files={"file": ("a.png", digits[0])}).json()["error"]
    too_many = {"images": [base64.b64encode(digits[0]).decode()] * (MAX_BATCH + 1)}
    assert client.post("/v1/predict/batch", json=too_many).status_code == 422


def test_page_and_docs_are_served_offline(client):
    page = client.get("/").text
    assert "<canvas" in page and "http" not in page.replace("http-equiv", "")  # no CDN: every asset is local
    assert client.get("/static/app.js").status_code == 200
    assert "/v1/predict" in client.get("/openapi.json").json()["paths"]
    # /docs and /redoc once loaded Swagger UI and ReDoc from a CDN: blank offline.
    for docs in ("/docs", "/redoc"):
        html = client.get(docs).text
        urls = re.findall(r"""(?:src|href|spec-url)=["']([^"']+)|url: *'([^']+)'""", html)
        urls = [a or b for a, b in urls]
        assert len(urls) >= 3 and "http" not in html.replace("http-equiv", ""), html
        for url in urls:
            assert url.startswith("/") and client.get(url).status_code == 200, url


def test_the_favicon_is_an_icon(client):
    r = client.get("/favicon.ico")  # a 404 once
    assert r.status_code == 200 and r.headers["content-type"] == "image/x-icon"
    with Image.open(io.BytesIO(r.content)) as icon:
        assert icon.format == "ICO" and np.asarray(icon.convert("L")).max() == 255


def test_v1_says_it_takes_0_255(client):
    """In its schema and its model card, as /v2 takes 0-1; an array of 0s and 1s is still 0-255."""
    schema = client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    described = schema["application/json"]["schema"]["properties"]["pixels"]
    assert "0-255, not 0-1" in described["description"] and described["items"]["items"]["maximum"] == 255
    assert "0-255, not 0-1" in client.get("/v1/model").json()["input"]["pixels"]
    ones = np.zeros((28, 28))
    ones[8:20, 13:15] = 1  # integers: 0-255, a faint stroke
    assert client.post("/v1/predict", json={"pixels": ones.tolist()}).status_code == 200


def test_json_batch_answers_each_item(client, digits):
    good = base64.b64encode(digits[3]).decode()
    r = client.post("/v1/predict/batch", json={"images": [good, "not base64!", good]})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[0]["digit"] == 3 and "base64" in results[1]["error"] and results[2]["digit"] == 3


def test_health_answers_while_a_heavy_batch_runs(mnist):
    """/healthz on a real server stays quick while a batch of 64 large images (the most one batch
    takes) is read, for a few seconds."""
    import threading
    import time

    import httpx

    digit = (1 - np.kron(mnist.x_test[0].squeeze(), np.ones((30, 30)))) * 255  # 840x840, dark on light
    image = png(np.pad(digit, 60, constant_values=255).astype(np.uint8))  # 960x960
    with running() as url:
        done = threading.Event()
        answers = []

        def batch():
            files = [("files", (f"{i}.png", image, "image/png")) for i in range(MAX_BATCH)]
            answers.append(httpx.post(url + "/v1/predict/batch", files=files, timeout=120))
            done.set()

        worker = threading.Thread(target=batch)
        worker.start()
        time.sleep(0.3)  # the batch is being read
        waits = []
        while not done.is_set():
            t0 = time.perf_counter()
            assert httpx.get(url + "/healthz", timeout=5).status_code == 200
            waits.append(time.perf_counter() - t0)
            time.sleep(0.05)
        worker.join()
    assert answers[0].status_code == 200 and [r["digit"] for r in answers[0].json()["results"]] == [7] * MAX_BATCH
    assert len(waits) >= 5  # the batch took long enough to measure anything
    # Answered between the batch's images, not after them: a blocked loop would wait seconds.
    # Bounds with room for a loaded CI machine: typical answers take milliseconds.
    assert sorted(waits)[len(waits) // 2] < 0.25 and max(waits) < 1.5, f"slowest /healthz: {max(waits):.2f} s"


def test_the_app_and_its_schema_are_built_without_loading_a_model(monkeypatch):
    """The model is loaded and warmed up when the app starts (its lifespan), once."""
    from digitlab.errors import DigitlabError
    from digitlab.io.load import load
    from digitlab.read import line
    from digitlab.serve import state

    loaded = []
    monkeypatch.setattr(state, "load", lambda path, **options: loaded.append(path) or load(path, **options))
    missing = create_app("no/such/model.onnx")
    assert "/v1/predict" in missing.openapi()["paths"]
    app = create_app()
    assert "/v2/models/{model_name}/infer" in app.openapi()["paths"]
    assert loaded == []
    line._session.cache_clear()
    with TestClient(app) as c:
        assert loaded == [None] and c.get("/readyz").json()["status"] == "ready"
        assert line._session.cache_info().currsize == 1  # the line reader made ready too
    with pytest.raises(DigitlabError, match="no model at"), TestClient(missing):
        pass


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("stops", ["returns", "raises"])
def test_serve_leaves_the_environment_as_it_found_it(monkeypatch, workers, stops):
    """`serve` hands its settings to uvicorn (through the environment for worker processes) and
    puts each variable back as it was, whether the server returns or raises."""
    import os

    import uvicorn
    from uvicorn.importer import import_from_string

    from digitlab.serve import app as served
    from digitlab.serve.connections import LOG_CONFIG, Guarded

    calls = []

    def run(app, **options):
        calls.append((app, options, dict(os.environ)))
        if stops == "raises":
            raise KeyboardInterrupt

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setenv(served.ENV_QUEUE_WAIT, "someone's own")  # kept, not dropped
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    before = dict(os.environ)
    with socket.socket() as s:  # a port free now: serve checks it before uvicorn starts
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(KeyboardInterrupt) if stops == "raises" else contextlib.nullcontext():
        served.serve(None, "127.0.0.1", port, 12345, workers=workers, queue_wait=2.5)
    assert dict(os.environ) == before
    ((app, options, during),) = calls
    # Its connections bounded (connections.py), in every worker process alike.
    assert options["http"] is Guarded and options["log_config"] is LOG_CONFIG and options["backlog"] >= 16
    assert options["timeout_keep_alive"] > 0 and options["h11_max_incomplete_event_size"] > 0
    if workers == 1:
        assert app.state.settings.max_upload == 12345 and app.state.settings.queue_wait == 2.5
        assert app.state.settings.model is not None  # loaded once, before uvicorn starts
        assert during == before
    else:
        assert callable(import_from_string(app)) and options["factory"] and options["workers"] == 2
        assert during[served.ENV_MAX_UPLOAD] == "12345" and during[served.ENV_QUEUE_WAIT] == "2.5"
        assert not os.path.exists(during["PROMETHEUS_MULTIPROC_DIR"])  # the run's own, removed after
        for name in (served.ENV_MODEL, served.ENV_MAX_UPLOAD, served.ENV_QUEUE_WAIT):
            monkeypatch.setenv(name, during[name])
        settings = served.app_from_env().state.settings  # what each worker process builds
        assert (settings.model_path, settings.max_upload, settings.queue_wait) == (None, 12345, 2.5)
