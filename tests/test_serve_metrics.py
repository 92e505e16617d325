"""/metrics on a real `digitlab serve`, scraped over HTTP and read with prometheus_client's own
parser, in one process and summed over `--workers 2`."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import until
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from digitlab.serve.app import running


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    text = httpx.get(url + "/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def uploads(mnist) -> dict[str, bytes]:
    picks = {d: int(np.flatnonzero(mnist.y_test == d)[0]) for d in (3, 7)}
    out = {
        str(d): png(((1 - np.kron(mnist.x_test[i].squeeze(), np.ones((5, 5)))) * 255).astype(np.uint8))
        for d, i in picks.items()
    }
    out["blank"] = png(np.full((64, 64), 255, np.uint8))
    return out


def test_metrics_count_requests_digits_declines_and_latency(uploads):
    with running() as url:
        for name in ("7", "7", "3", "blank"):
            assert httpx.post(url + "/v1/predict", files={"file": (name, uploads[name])}).status_code == 200
        assert httpx.post(url + "/v1/predict", content=b"x", headers={"content-type": "text/plain"}).status_code == 415
        assert httpx.get(url + "/no/such/path").status_code == 404
        infer = {"inputs": [{"name": "images", "datatype": "FP32", "shape": [2, 28, 28, 1], "data": [0.0] * 1568}]}
        assert httpx.post(url + "/v2/models/digitlab/infer", json=infer).status_code == 200
        samples = scrape(url)
    assert value(samples, "digitlab_requests_total", method="POST", route="/v1/predict", status="200") == 4
    assert value(samples, "digitlab_requests_total", method="POST", route="/v1/predict", status="415") == 1
    assert value(samples, "digitlab_requests_total", method="GET", route="unmatched", status="404") == 1
    route = "/v2/models/{model_name}/infer"  # the template, not the path: the label set stays bounded
    assert value(samples, "digitlab_requests_total", method="POST", route=route, status="200") == 1
    assert value(samples, "digitlab_predictions_total", digit="7") == 2
    assert value(samples, "digitlab_predictions_total", digit="3") == 1
    assert value(samples, "digitlab_declined_total") == 1
    count = value(samples, "digitlab_request_duration_seconds_count", method="POST", route="/v1/predict")
    inf = value(samples, "digitlab_request_duration_seconds_bucket", method="POST", route="/v1/predict", le="+Inf")
    fast = value(samples, "digitlab_request_duration_seconds_bucket", method="POST", route="/v1/predict", le="0.005")
    assert count == inf == 5 and fast < 5  # every request observed, and in the buckets they took
    assert value(samples, "digitlab_requests_in_flight") == 1  # the scrape itself
    assert ("digitlab_queue_waiting", ()) in samples
    assert value(samples, "digitlab_workers_busy") == 0  # every answer given, every worker back


def test_workers_serve_together_and_their_metrics_are_summed(uploads):
    """`--workers 2`: two processes, each writing its metrics to the shared folder of Prometheus'
    multiprocess mode, and /metrics sums them whichever process answers the scrape."""
    import psutil

    def post(_: int) -> int:
        return httpx.post(url + "/v1/predict", files={"file": ("7", uploads["7"])}).json()["digit"]

    with running(options=("--workers", "2")) as url:
        server = next(p for p in psutil.Process().children() if "serve" in p.cmdline())
        workers = [p for p in server.children() if "spawn_main" in " ".join(p.cmdline())]
        with ThreadPoolExecutor(8) as pool:  # a fresh connection each, several at once: both processes take some
            assert list(pool.map(post, range(40))) == [7] * 40
        scrapes = [scrape(url) for _ in range(6)]
        folder = Path(workers[0].environ()["PROMETHEUS_MULTIPROC_DIR"])
        # A worker's files are made as it starts, which may be late here.
        until(lambda: all(any(f.name.endswith(f"_{w.pid}.db") for f in folder.iterdir()) for w in workers), 30)
        files = [f.name for f in folder.iterdir()]
    assert len(workers) == 2
    assert all(any(name.endswith(f"_{w.pid}.db") for name in files) for w in workers), files
    for samples in scrapes:
        assert value(samples, "digitlab_requests_total", method="POST", route="/v1/predict", status="200") == 40
        assert value(samples, "digitlab_predictions_total", digit="7") == 40
