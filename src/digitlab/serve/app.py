"""The REST API and the draw-a-digit page: `digitlab serve`.

    /v1/...                 digitlab's own API: images in, digits out (v1.py)
    /v2/...                 the Open Inference Protocol, KServe v2 (v2.py)
    GET  /healthz, /readyz  liveness and readiness probes (probes.py)
    GET  /metrics           Prometheus metrics (metrics.py)
    GET  /                  the draw-a-digit page (all assets served from the package)
    GET  /docs, /redoc      OpenAPI documentation, its scripts served from the installed package

Each API is a router of its own; what their routes share (settings, model, worker pool, metrics)
lives on `app.state`, set up by the app's lifespan (state.py). Bad input is never a 500: every
refusal is a 4xx with {"error": "..."} saying what is wrong, and a saturated server answers 503
with Retry-After (limits.py). A client that leaves before its request is read is counted as 499,
nginx's "client closed request". `serve` runs it on uvicorn with connections bounded in number
and time (connections.py).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from digitlab.environment import take_share, temporarily, tune_allocator
from digitlab.errors import DigitlabError
from digitlab.io.load import load
from digitlab.serve import probes, v1, v2
from digitlab.serve.connections import (
    ENV_BODY_TIMEOUT,
    ENV_HEADER_TIMEOUT,
    HEADER_TIMEOUT,
    KEEP_ALIVE,
    LOG_CONFIG,
    MAX_HEADERS,
    Guarded,
    budget,
    raise_open_files,
    seconds,
)
from digitlab.serve.inputs import MAX_BATCH
from digitlab.serve.limits import BODY_TIMEOUT, QUEUE_WAIT, BodyLimit, Refused
from digitlab.serve.metrics import Measured
from digitlab.serve.state import MAX_UPLOAD, Settings, lifespan, warm_up
from digitlab.version import __version__

__all__ = ["MAX_BATCH", "MAX_UPLOAD", "app_from_env", "create_app", "running", "serve"]

log = logging.getLogger("digitlab.serve")
# `digitlab serve --workers N` starts N processes that build their app from these (app_from_env).
ENV_MODEL, ENV_MAX_UPLOAD, ENV_QUEUE_WAIT, ENV_WORKERS = (
    "DIGITLAB_SERVE_MODEL",
    "DIGITLAB_SERVE_MAX_UPLOAD",
    "DIGITLAB_SERVE_QUEUE_WAIT",
    "DIGITLAB_SERVE_WORKERS",
)
FACTORY = "digitlab.serve.app:app_from_env"
CLIENT_CLOSED = 499  # nginx's status for a client that closed its connection before the answer


async def refused(_: Request, e: Refused) -> JSONResponse:
    return JSONResponse({"error": str(e)}, status_code=e.status, headers=e.headers)


async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
    first = e.errors()[0] if e.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)


async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=e.headers)  # 405: Allow


async def disconnected(request: Request, _: ClientDisconnect) -> JSONResponse:
    # Nobody is left to answer: the status is for the metrics and the access log, not a 500.
    log.info("%s %s: the client left before sending its whole request", request.method, request.url.path)
    return JSONResponse({"error": "client closed the request"}, status_code=CLIENT_CLOSED)


async def unexpected(request: Request, e: Exception) -> JSONResponse:
    # A bug, not a bad request: the traceback goes to the server's log, a JSON 500 to the client.
    log.error("%s %s failed", request.method, request.url.path, exc_info=e)
    return JSONResponse({"error": "internal server error; the server log has the details"}, status_code=500)


def build(settings: Settings) -> FastAPI:
    """The app for `settings`; its model is loaded when it starts (its lifespan), not here."""
    app = FastAPI(
        title="digitlab",
        version=__version__,
        description="Reads handwritten digits from images, prepared the way MNIST was.",
        lifespan=lifespan,
        docs_url=None,  # probes.page serves them, from the installed package rather than a CDN
        redoc_url=None,
        exception_handlers={
            Refused: refused,
            RequestValidationError: invalid,
            StarletteHTTPException: http_error,
            ClientDisconnect: disconnected,
            Exception: unexpected,
        },
    )
    app.state.settings = settings
    app.add_middleware(BodyLimit, limit=settings.max_upload, timeout=settings.body_timeout)
    app.add_middleware(Measured)  # outermost: 413s from the body limit are counted too
    app.include_router(probes.router)
    app.include_router(v1.router)
    app.include_router(v2.router)
    app.mount("/static", StaticFiles(directory=probes.WEB), name="static")
    app.mount(probes.DOCS_ASSETS, StaticFiles(packages=[probes.DOCS_PACKAGE]), name="docs-assets")
    app.include_router(probes.page)
    return app


def create_app(
    model_path: str | Path | None = None,
    max_upload: int = MAX_UPLOAD,
    queue_wait: float = QUEUE_WAIT,
    body_timeout: float = BODY_TIMEOUT,
) -> FastAPI:
    """The app, serving the one model it was created with once it starts."""
    return build(Settings(model_path, max_upload, queue_wait, body_timeout))


def app_from_env() -> FastAPI:
    """The app of one worker process of `digitlab serve --workers N` (uvicorn's factory), set up
    from the environment the command gives it. The process is one of several on the machine's
    cores: OpenCV and ONNX Runtime each get its share of them, not a thread per core each (which
    made two processes serve fewer requests than one: docs/BENCHMARKS.md)."""
    share = take_share(int(os.environ.get(ENV_WORKERS, "1")))
    tune_allocator()
    settings = Settings(
        os.environ.get(ENV_MODEL) or None,
        int(os.environ.get(ENV_MAX_UPLOAD, MAX_UPLOAD)),
        float(os.environ.get(ENV_QUEUE_WAIT, QUEUE_WAIT)),
        seconds(ENV_BODY_TIMEOUT, BODY_TIMEOUT),
        threads=share,
    )
    return build(settings)


def check_port(host: str, port: int) -> None:
    """Refuse an address in use in one line before uvicorn starts, which would find it only after
    the app's startup, and end with a message of its own."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn binds it
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise DigitlabError(
                    f"port {port} on {host} is in use; stop what holds it, or choose another with --port"
                ) from None
            why = e.strerror or str(e)
            raise DigitlabError(f"cannot listen on {host}:{port} ({why}); check --host and --port") from None


def serve(
    model_path: str | Path | None,
    host: str,
    port: int,
    max_upload: int,
    workers: int = 1,
    queue_wait: float = QUEUE_WAIT,
) -> None:
    import uvicorn

    check_port(host, port)
    body_timeout = seconds(ENV_BODY_TIMEOUT, BODY_TIMEOUT)  # both checked here, in one line if wrong
    seconds(ENV_HEADER_TIMEOUT, HEADER_TIMEOUT)
    model = load(model_path)  # a bad model is one line here, not a traceback from uvicorn's startup
    warm_up(model)  # and so is one that cannot run
    # For this process and the worker processes it starts, which inherit it.
    backlog = budget(raise_open_files())[1]
    options = {
        "host": host,
        "port": port,
        "http": Guarded,
        "backlog": backlog,
        "timeout_keep_alive": KEEP_ALIVE,
        "h11_max_incomplete_event_size": MAX_HEADERS,
        "log_config": LOG_CONFIG,
        "log_level": "info",
    }
    if workers == 1:
        tune_allocator()
        app = build(Settings(model_path, max_upload, queue_wait, body_timeout, model=model))
        uvicorn.run(app, **options)
        return
    del model  # this process serves nothing itself: each worker process loads its own
    # Worker processes are spawned, so they see this process's environment as it is when they
    # start: it carries their settings, and Prometheus' multiprocess mode sums their metrics
    # through files in a folder of this run's own. Both are undone when the server stops.
    with tempfile.TemporaryDirectory(prefix="digitlab-metrics-") as folder:
        settings = {
            ENV_MODEL: str(model_path or ""),
            ENV_MAX_UPLOAD: str(max_upload),
            ENV_QUEUE_WAIT: str(queue_wait),
            ENV_WORKERS: str(workers),
            "PROMETHEUS_MULTIPROC_DIR": folder,
        }
        with temporarily(settings):
            uvicorn.run(FACTORY, factory=True, workers=workers, **options)


@contextlib.contextmanager
def running(
    model_path: str | Path | None = None,
    timeout: float = 60,
    options: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    log: Path | None = None,
    open_files: int | None = None,
) -> Iterator[str]:
    """`digitlab serve [options]` in a child process on a free loopback port, for tests,
    benchmarks and notebooks: yields its base URL once /readyz answers, stops it afterwards.
    `env` adds to its environment, `log` keeps its log, `open_files` caps its open files."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "digitlab.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *options]
    if model_path is not None:
        command += ["--model", str(model_path)]
    cap = None if open_files is None else functools.partial(_cap_open_files, open_files)
    # The log goes to a file, not a pipe nobody reads: a full pipe would stall the server.
    with open(log, "w+b") if log is not None else tempfile.TemporaryFile() as log_file:
        proc = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=log_file, env={**os.environ, **(env or {})}, preexec_fn=cap
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    urllib.request.urlopen(url + "/readyz", timeout=1)
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log_file.seek(0)
                        raise RuntimeError(
                            f"digitlab serve did not start: {log_file.read().decode()[-2000:]}"
                        ) from None
                    time.sleep(0.1)
            yield url
        finally:
            proc.terminate()
            proc.wait(15)


def _cap_open_files(limit: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
