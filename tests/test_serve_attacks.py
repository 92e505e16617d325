"""A real `digitlab serve` under the attacks of issue 32, over raw sockets where a well-behaved
client cannot send them: headers that are not numbers, a polyglot image (tests/corpus), idle and
slow connections by the hundred, clients that leave mid-upload. Each once a 500, a lock-out, a
hang or a traceback per client; now a 4xx, a closed connection or a count, and a quiet log."""

from __future__ import annotations

import contextlib
import io
import json
import re
import selectors
import socket
import time
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import digitlab, until
from corpus import make_polyglot
from PIL import Image

from digitlab.serve.app import running
from digitlab.serve.connections import ENV_BODY_TIMEOUT, ENV_HEADER_TIMEOUT, budget

CORPUS = Path(__file__).parent / "corpus"
OPEN_FILES = 256  # the server's limit on open files: a few hundred idle connections exhaust it
TIMEOUT = 1.0  # the header and body timeouts of the server the slow clients meet


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server with the default timeouts, on a small budget of open files."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with running(log=log, open_files=OPEN_FILES) as url:
        yield url, log


@pytest.fixture(scope="module")
def impatient(tmp_path_factory):
    """A server whose header and body timeouts are short enough to wait for."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {ENV_HEADER_TIMEOUT: str(TIMEOUT), ENV_BODY_TIMEOUT: str(TIMEOUT)}
    with running(env=env, log=log) as url:
        yield url, log


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def exchange(url: str, request: bytes, timeout: float = 10) -> tuple[int, dict]:
    """Send `request` as bytes on a fresh connection; the answer's status and JSON body."""
    with socket.create_connection(address(url), timeout=timeout) as s:
        s.sendall(request)
        return answer(s)


def answer(s: socket.socket) -> tuple[int, dict]:
    """One answer read from `s`: its status and JSON body."""
    received = b""
    while b"\r\n\r\n" not in received or len(received.partition(b"\r\n\r\n")[2]) < length(received):
        chunk = s.recv(65536)
        if not chunk:
            break
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if body else {}


def length(answer: bytes) -> int:
    found = re.search(rb"(?i)content-length: *(\d+)", answer)
    return int(found[1]) if found else 0


def server_process(url: str) -> psutil.Process:
    """The `digitlab serve` child process listening at `url`."""
    port = str(address(url)[1])
    (process,) = [p for p in psutil.Process().children() if port in p.cmdline()]
    return process


def peak_rss_mib(process: psutil.Process) -> float:
    status = Path(f"/proc/{process.pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", status)[1]) / 1024


def infer_request(header_length: bytes) -> bytes:
    body = b'{"inputs": []}'
    return (
        b"POST /v2/models/digitlab/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
        b"Inference-Header-Content-Length: " + header_length + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


@pytest.mark.parametrize(
    "value",
    [b"\xb2", b"9" * 5000, b"0" * 4301 + b"5", b"-5", b"+5", b"1e3", b"0x10", b"\xd9\xa1", b"99"],
    ids=[
        "superscript-two",
        "5000-digits",
        "4302-digits",
        "negative",
        "plus",
        "exponent",
        "hex",
        "arabic-one",
        "past-body",
    ],
)
def test_v2_header_length_is_read_strictly(server, value):
    """Each once a 500 (`str.isdigit` takes "²"; `int` refuses over 4,300 digits), or a 400
    that did not say what is wrong."""
    status, body = exchange(server[0], infer_request(value))
    assert status == 400, body
    assert "Inference-Header-Content-Length" in body["error"]
    assert ("ASCII digits" if value != b"99" else "at most the body's") in body["error"]


@pytest.mark.filterwarnings("ignore:IM image format is deprecated:DeprecationWarning")
def test_polyglot_is_decoded_as_the_format_that_was_checked(server):
    """tests/corpus/polyglot.tif is a blank 32x32 TIFF whose bytes also declare a 40 Mpx IM
    image. The header check sees the TIFF; the decoder once opened the IM: 64 of them held a
    worker for seconds and raised the server's peak memory by ~80 MB."""
    polyglot = (CORPUS / "polyglot.tif").read_bytes()
    assert polyglot == make_polyglot.polyglot()  # the file is what its script says
    Image.init()
    if "IM" in Image.OPEN:  # deprecated in Pillow 13: while it is there, it reads these bytes too
        factory, _ = Image.OPEN["IM"]
        with factory(io.BytesIO(polyglot), "p.tif") as unrestricted:
            assert unrestricted.format == "IM" and unrestricted.size == (6300, 6300)
    url, _ = server
    first = httpx.post(url + "/v1/predict", files={"file": ("p.tif", polyglot)}, timeout=30)
    assert first.status_code == 200 and first.json()["reason"].startswith("no ink"), first.text  # the blank TIFF
    process = server_process(url)
    before = peak_rss_mib(process)
    t0 = time.perf_counter()
    files = [("files", (f"{i}.tif", polyglot)) for i in range(64)]
    batch = httpx.post(url + "/v1/predict/batch", files=files, timeout=60)
    seconds = time.perf_counter() - t0
    assert batch.status_code == 200 and all(r["reason"].startswith("no ink") for r in batch.json()["results"])
    assert seconds < 3, f"64 polyglots took {seconds:.1f} s"  # ~0.3 s; 4.6 s through the IM decoder
    assert peak_rss_mib(process) - before < 40  # ~4 MiB; ~80 through the IM decoder


def test_idle_connections_cannot_lock_out_the_probes(server):
    """Twice as many idle connections as the server has open files for, some with half a
    request: past its cap the server closes the longest idle, so /healthz still gets in, and
    the process never runs out of files (once: no probe for ~40 s, a traceback per accept)."""
    url, log = server
    host, port = address(url)
    idle = []
    try:
        for i in range(2 * OPEN_FILES):
            s = socket.create_connection((host, port), timeout=5)
            if i % 2:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
            idle.append(s)
            if i % 4 == 3:  # not faster than the server accepts: a full accept queue costs a 1 s retry
                time.sleep(0.003)
        # The first probe waits, untimed, for the server to work through its accept queue; then
        # each is answered at once (when the server ran out of files: none for ~40 s).
        t0 = time.perf_counter()
        assert httpx.get(url + "/healthz", timeout=30).status_code == 200
        assert time.perf_counter() - t0 < 10
        for _ in range(3):
            t0 = time.perf_counter()
            assert httpx.get(url + "/healthz", timeout=3).status_code == 200
            assert time.perf_counter() - t0 < 2
        # All but the cap's worth were closed: the server holds no more than its files allow.
        assert len(idle) - closed_by_server(idle) <= budget(OPEN_FILES)[0]
    finally:
        for s in idle:
            s.close()
    text = log.read_text()
    assert "Too many open files" not in text and "Traceback" not in text, text[-2000:]


def test_a_flood_of_bad_requests_logs_a_few_lines(server):
    """Garbage and over-long headers, 40 of them: each a 400, but the log says so about once a
    second (once a line each, and asyncio's tracebacks one per failed accept)."""
    url, log = server
    for i in range(40):
        bad = b"NOT HTTP AT ALL\r\n\r\n" if i % 2 else b"GET / HTTP/1.1\r\nX: " + b"x" * 20_000 + b"\r\n\r\n"
        with socket.create_connection(address(url), timeout=5) as s:
            s.sendall(bad)
            assert s.recv(4096).startswith(b"HTTP/1.1 400")
    assert log.read_text().count("Invalid HTTP request received.") < 10


def closed_by_server(connections: list[socket.socket]) -> int:
    """How many of `connections` the server has closed (each reads as end of file, or a reset)."""
    with selectors.DefaultSelector() as selector:
        for s in connections:
            selector.register(s, selectors.EVENT_READ)
        ready = [key.fileobj for key, _ in selector.select(timeout=0.5)]
    closed = 0
    for s in ready:
        try:
            closed += s.recv(1) == b""
        except ConnectionResetError:
            closed += 1
    return closed


@pytest.mark.parametrize("kept_alive", [False, True], ids=["new-connection", "kept-alive"])
def test_headers_sent_slowly_are_cut_off(impatient, kept_alive):
    """slowloris: a byte every 0.2 s never finishes its headers; the server hangs up after the
    header timeout (once: never), whether it is a connection's first request or a later one,
    and its log says why."""
    url, log = impatient
    with socket.create_connection(address(url), timeout=5) as s:
        if kept_alive:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert answer(s)[0] == 200
        t0 = time.perf_counter()
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        try:
            while time.perf_counter() - t0 < 4 * TIMEOUT:
                s.sendall(b"X")
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.settimeout(4 * TIMEOUT)
        with contextlib.suppress(ConnectionResetError):
            assert s.recv(1) == b""
        waited = time.perf_counter() - t0
    assert TIMEOUT * 0.8 < waited < TIMEOUT * 3.5, f"cut off after {waited:.1f} s"  # never cut: past 4x
    assert "sent no complete request" in log.read_text()


def test_a_body_sent_slowly_gets_408(impatient):
    url, _ = impatient
    with socket.create_connection(address(url), timeout=5) as s:
        s.sendall(
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        t0 = time.perf_counter()
        answer = s.recv(4096)
        waited = time.perf_counter() - t0
        while chunk := s.recv(4096):  # the rest, until the server closes the connection
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"did not arrive within" in answer and TIMEOUT * 0.8 < waited < TIMEOUT * 2.5


def scrape(url: str) -> dict[str, float]:
    """digitlab_requests_total by status, summed over routes."""
    totals: dict[str, float] = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        found = re.match(r'digitlab_requests_total\{.*status="(\d+)".*\} (\S+)', line)
        if found:
            totals[found[1]] = totals.get(found[1], 0) + float(found[2])
    return totals


@pytest.mark.parametrize("kind", ["json", "multipart"])
def test_a_client_that_leaves_mid_upload_is_a_499_not_a_500(impatient, kind):
    """Once each a 500 in the metrics and an ERROR traceback in the log (ClientDisconnect)."""
    url, log = impatient
    before = scrape(url).get("499", 0)
    content_type = b"application/json" if kind == "json" else b"multipart/form-data; boundary=x"
    start = (
        b'{"pixels": [[0'
        if kind == "json"
        else b'--x\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
    )
    for _ in range(5):
        with socket.create_connection(address(url), timeout=5) as s:
            head = b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: " + content_type
            s.sendall(head + b"\r\nContent-Length: 100000\r\n\r\n" + start + b"0" * 1000)
            time.sleep(0.05)  # the server is reading the body when the client leaves
    until(lambda: scrape(url).get("499", 0) - before >= 5, 15)  # each departure counted once noticed
    totals = scrape(url)
    assert totals.get("499", 0) - before == 5 and "500" not in totals, totals
    text = log.read_text()
    assert "Traceback" not in text and "ClientDisconnect" not in text, text[-2000:]
    assert 1 <= text.count("the client left before sending its whole request") < 5  # not a line per client


def test_a_port_in_use_is_one_error_line():
    """Once uvicorn's own message after "Application startup complete", and exit 3."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = digitlab("serve", "--port", str(port), timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: port {port} on 127.0.0.1 is in use; stop what holds it, or choose another with --port"
    ]
