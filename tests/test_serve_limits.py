"""A real `digitlab serve` under hostile hand-made inputs and a fuzzer: each bad one a 4xx with a
JSON error naming the problem, images refused from their header before a pixel is decoded, and
back-pressure (503 with Retry-After) when every worker stays busy, while the probes answer."""

from __future__ import annotations

import functools
import io
import platform
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from conftest import digitlab, until
from PIL import Image

from digitlab.serve.app import running
from digitlab.serve.limits import MAX_IMAGE_PIXELS, MAX_REQUEST_PIXELS, image_pixels


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def palette_bomb(side: int) -> bytes:
    """A palette PNG with a transparent colour: a few KB on disk, read through RGBA when decoded."""
    return encode(Image.new("P", (side, side)), "PNG", transparency=0)


@pytest.fixture(scope="module")
def server():
    with running() as url:
        yield url


@pytest.fixture(scope="module")
def digit(mnist) -> np.ndarray:
    """A 7 from MNIST's test split at 8x: float ink in [0, 1]."""
    return np.kron(mnist.x_test[0].squeeze(), np.ones((8, 8)))


def upload(url: str, data: bytes, name: str = "image") -> httpx.Response:
    return httpx.post(url + "/v1/predict", files={"file": (name, data)}, timeout=60)


def test_faint_transparent_ink_and_16_bit_greyscale_are_read(server, digit):
    rgba = np.zeros((*digit.shape, 4), np.uint8)
    rgba[..., 3] = (digit * 0.4 * 255).astype(np.uint8)  # ink at 40% opacity: a 500 once
    sixteen = (65535 - digit * 50000).astype(np.uint16)  # dark on light, 16-bit: read as blank once
    for image in (Image.fromarray(rgba, "RGBA"), Image.fromarray(sixteen)):
        r = upload(server, encode(image, "PNG"))
        assert r.status_code == 200 and r.json()["digit"] == 7, r.text


def test_a_palette_png_under_the_limit_is_read_within_it(server):
    r = upload(server, palette_bomb(3000))  # 9 Mpx: allowed, and blank
    assert r.status_code == 200 and r.json()["reason"].startswith("no ink"), r.text


def test_large_images_are_told_from_their_header_a_jpeg_being_decoded_reduced():
    """Read one at a time in a process (Pool.reading): a 16 Mpx PNG is, and a 2000x2000 one (read
    unreduced); a 12 Mpx phone JPEG (decoded at a quarter of its pixels) and a 140x140 PNG are not."""
    assert image_pixels(palette_bomb(4000)) == (16_000_000, True)
    assert image_pixels(encode(Image.new("RGBA", (2000, 2000)), "PNG")) == (4_000_000, True)
    assert image_pixels(encode(Image.new("RGB", (4000, 3000)), "JPEG")) == (12_000_000, False)
    assert image_pixels(encode(Image.new("L", (140, 140)), "PNG")) == (19_600, False)


def each_run(child: str, *hows: str) -> dict[str, int]:
    """The number a fresh Python process running `child` prints, given each of `hows`."""
    run = functools.partial(subprocess.run, capture_output=True, text=True, check=True)
    return {how: int(run([sys.executable, "-c", child, how]).stdout) for how in hows}


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_a_serving_process_hands_large_frees_back():
    """After tune_allocator (which `digitlab serve` calls in each serving process), images'
    large arrays go back to the system once freed; glibc otherwise kept ~23 MiB of these here."""
    child = (
        "import sys, numpy as np\n"
        "from digitlab.environment import tune_allocator\n"
        "if sys.argv[1] == 'serving':\n"
        "    tune_allocator()\n"
        "def rss():\n"
        "    return next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmRSS'))\n"
        "before, kept = rss(), []\n"
        "for _ in range(6):\n"
        "    large, half = np.ones(4_000_000, np.float32), np.ones(2_000_000, np.float32)\n"
        "    kept.append(np.ones(1000, np.float32))  # small ones between, as requests make\n"
        "    del large, half\n"
        "print((rss() - before) // 1024)\n"
    )
    kept = each_run(child, "serving", "default")
    assert kept["serving"] <= 2 < kept["default"], kept


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_a_serving_process_keeps_its_heap_between_images():
    """After tune_allocator, the heap an image's arrays took is kept for the next image, not
    handed back to be faulted in again page by page, as it was with only the mmap bar set."""
    child = (
        "import ctypes, resource, sys, numpy as np\n"
        "from digitlab.environment import LARGE_ALLOCATION, M_MMAP_THRESHOLD, tune_allocator\n"
        "if sys.argv[1] == 'tuned':\n"
        "    tune_allocator()\n"
        "else:\n"
        "    ctypes.CDLL('libc.so.6').mallopt(M_MMAP_THRESHOLD, LARGE_ALLOCATION)\n"
        "def image():  # three 3 MB arrays at once, as reading a 900x900 photo makes\n"
        "    a = np.ones(750_000, np.float32)\n"
        "    b, c = a * 2, a * 3\n"
        "    del a, b, c\n"
        "image()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(20):\n"
        "    image()\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    faults = each_run(child, "tuned", "bar only")
    assert faults["tuned"] < 100 and faults["tuned"] * 10 < faults["bar only"], faults


def eps() -> bytes:
    return encode(Image.new("RGB", (40, 40)), "EPS")


CORPUS = {  # made when a test runs, not at collection: the bombs take a second to write
    # Over the pixel limit, whatever the format: refused from the header.
    "palette-png-bomb": (lambda: palette_bomb(6000), 422, "image too large: 6000x6000"),
    "tiff-bomb": (lambda: encode(Image.new("L", (4100, 4100)), "TIFF", compression="tiff_deflate"), 422, "too large"),
    "gif-bomb": (lambda: encode(Image.new("L", (4100, 4100)), "GIF"), 422, "too large"),
    # Formats digitlab does not read: refused by name before any parser of theirs runs.
    "eps": (eps, 415, "image format EPS is not accepted"),
    "ico": (lambda: encode(Image.new("RGB", (40, 40)), "ICO"), 415, "image format ICO is not accepted"),
    "pdf": (lambda: b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n", 422, "not a readable image"),
    "empty": (lambda: b"", 422, "empty (0 bytes)"),
}


@pytest.mark.parametrize(("make", "status", "message"), CORPUS.values(), ids=CORPUS.keys())
def test_bad_images_are_refused_from_their_header(server, make, status, message):
    r = upload(server, make())
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert message in error and ("send PNG, JPEG" in error or "scale it down" in error)  # the problem, the fix
    assert "\n" not in error and "object at 0x" not in error


JSON = {"content-type": "application/json"}


DEEP = b'{"pixels": ' + b"[" * 1000 + b"]" * 1000 + b"}"  # 1,000 levels: a 500 once


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/predict", DEEP, 400, "nests too deep"),
        ("/v1/predict/batch", DEEP, 400, "nests too deep"),
        # In a batch, a bad item is that item's error; the others are answered.
        ("/v1/predict/batch", b'{"pixels": [[[1' + b"0" * 400 + b"]]]}", 200, "too large for a float"),
        ("/v1/predict/batch", b'{"pixels": [[[' + b"9" * 5000 + b"]]]}", 400, "number too long"),
    ],
    ids=["deep-1000", "batch-deep-1000", "batch-10**400", "batch-5000-digits"],
)
def test_bad_json_gets_a_clear_error(server, path, body, status, message):
    r = httpx.post(server + path, content=body, headers=JSON)
    assert r.status_code == status, r.text
    assert message in (r.json()["error"] if status != 200 else r.json()["results"][0]["error"])


def test_pixels_per_request_are_limited_before_decoding(server):
    side = int((MAX_REQUEST_PIXELS / 5) ** 0.5) + 1  # five images under the per-image limit, over it in all
    assert side * side <= MAX_IMAGE_PIXELS
    files = [("files", (f"{i}.png", encode(Image.new("L", (side, side), 255), "PNG"))) for i in range(5)]
    r = httpx.post(server + "/v1/predict/batch", files=files, timeout=60)
    assert r.status_code == 413 and f"over the {MAX_REQUEST_PIXELS:,}" in r.json()["error"], r.text


def test_a_refused_format_in_a_batch_is_that_item_s_error(server, digit):
    good = encode(Image.fromarray((255 - digit * 255).astype(np.uint8)), "PNG")
    files = [("files", ("a.png", good)), ("files", ("b.eps", eps())), ("files", ("c.png", good))]
    results = httpx.post(server + "/v1/predict/batch", files=files, timeout=60).json()["results"]
    assert results[0]["digit"] == results[2]["digit"] == 7 and "EPS is not accepted" in results[1]["error"]


def test_readiness(server):
    assert httpx.get(server + "/readyz").json()["status"] == "ready"
    assert httpx.get(server + "/v2/health/ready").json() == {"ready": True}


def busy_workers(url: str) -> float:
    lines = httpx.get(url + "/metrics", timeout=5).text.splitlines()
    found = [float(line.split()[1]) for line in lines if line.startswith("digitlab_workers_busy ")]
    assert found, "no digitlab_workers_busy in /metrics"
    return found[0]


def test_a_saturated_server_answers_503_with_retry_after_and_its_probes_stay_quick(mnist):
    """Two heavy batches hold both workers for seconds; a request that cannot get one within
    --queue-wait gets 503 and Retry-After, while liveness and readiness answer at once."""
    digit = (1 - np.kron(mnist.x_test[0].squeeze(), np.ones((30, 30)))) * 255
    heavy = [
        ("files", (f"{i}.png", encode(Image.fromarray(np.pad(digit, 60, constant_values=255).astype(np.uint8)), "PNG")))
        for i in range(48)  # ~56 Mpx a batch: seconds of work on any machine, under the 64 Mpx limit
    ]
    tensor = {"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 28, 28, 1], "data": [0.0] * 784}]}
    with running(options=("--queue-wait", "0.3")) as url:
        answers: list[httpx.Response] = []
        batches = [
            threading.Thread(
                target=lambda: answers.append(httpx.post(url + "/v1/predict/batch", files=heavy, timeout=120))
            )
            for _ in range(2)
        ]
        for b in batches:
            b.start()
        # Both batches uploaded and at work, however slow the machine.
        assert until(lambda: busy_workers(url) == 2, 30), "the two batches never held both workers"
        t0 = time.perf_counter()
        busy = httpx.post(url + "/v2/models/digitlab/infer", json=tensor, timeout=10)
        waited = time.perf_counter() - t0
        probes = []
        for path in ("/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/metrics"):
            t0 = time.perf_counter()
            probes.append((httpx.get(url + path, timeout=5).status_code, time.perf_counter() - t0))
        still_busy = any(b.is_alive() for b in batches)
        for b in batches:
            b.join()
        after = httpx.post(url + "/v2/models/digitlab/infer", json=tensor, timeout=10)
    assert still_busy, "the batches ended before the probes: not a test of saturation"
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1", busy.text
    assert "busy" in busy.json()["error"] and 0.25 < waited < 4  # --queue-wait honoured, then refused
    assert all(status == 200 and seconds < 1.5 for status, seconds in probes), probes  # not behind the batches
    assert [a.status_code for a in answers] == [200, 200] and after.status_code == 200


def test_serve_options_are_checked_in_one_line():
    for option, value in (("--workers", "0"), ("--queue-wait", "0"), ("--queue-wait", "-1")):
        result = digitlab("serve", option, value, "--port", "8765")
        assert result.returncode == 2 and option in result.stderr and "Traceback" not in result.stderr


def test_the_command_s_default_wait_is_the_server_s():
    import inspect

    from digitlab.cli import use as cli_use
    from digitlab.serve.limits import QUEUE_WAIT

    assert inspect.signature(cli_use.serve).parameters["queue_wait"].default == QUEUE_WAIT
