"""The REST API and the draw-a-digit page: `digitlab serve`.

    /v1/...                 digitlab's own API: images in, digits out (v1.py)
    /v2/...                 the Open Inference Protocol, KServe v2 (v2.py)
    GET  /healthz, /readyz  liveness and readiness probes (probes.py)
    GET  /metrics           Prometheus metrics (metrics.py)
    GET  /                  the draw-a-digit page (all assets served from the package)
    GET  /docs              OpenAPI documentation

Each API is a router of its own; what their routes share (settings, model, worker pool, metrics)
lives on `app.state`, set up by the app's lifespan (state.py). Bad input is never a 500: every
refusal is a 4xx with {"error": "..."} saying what is wrong, and a saturated server answers 503
with Retry-After (limits.py).
"""

from __future__ import annotations

import contextlib
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

from digitlab.environment import temporarily
from digitlab.io.load import load
from digitlab.serve import probes, v1, v2
from digitlab.serve.inputs import MAX_BATCH
from digitlab.serve.limits import QUEUE_WAIT, BodyLimit, Refused
from digitlab.serve.metrics import Measured
from digitlab.serve.state import MAX_UPLOAD, Settings, lifespan
from digitlab.version import __version__

__all__ = ["MAX_BATCH", "MAX_UPLOAD", "app_from_env", "create_app", "running", "serve"]

log = logging.getLogger("digitlab.serve")
# `digitlab serve --workers N` starts N processes that build their app from these (app_from_env).
ENV_MODEL, ENV_MAX_UPLOAD, ENV_QUEUE_WAIT = (
    "DIGITLAB_SERVE_MODEL",
    "DIGITLAB_SERVE_MAX_UPLOAD",
    "DIGITLAB_SERVE_QUEUE_WAIT",
)
FACTORY = "digitlab.serve.app:app_from_env"


async def refused(_: Request, e: Refused) -> JSONResponse:
    return JSONResponse({"error": str(e)}, status_code=e.status, headers=e.headers)


async def invalid(_: Request, e: RequestValidationError) -> JSONResponse:
    first = e.errors()[0] if e.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)


async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=e.headers)  # 405: Allow


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
        exception_handlers={
            Refused: refused,
            RequestValidationError: invalid,
            StarletteHTTPException: http_error,
            Exception: unexpected,
        },
    )
    app.state.settings = settings
    app.add_middleware(BodyLimit, limit=settings.max_upload)
    app.add_middleware(Measured)  # outermost: 413s from the body limit are counted too
    app.include_router(probes.router)
    app.include_router(v1.router)
    app.include_router(v2.router)
    app.mount("/static", StaticFiles(directory=probes.WEB), name="static")
    app.include_router(probes.page)
    return app


def create_app(
    model_path: str | Path | None = None, max_upload: int = MAX_UPLOAD, queue_wait: float = QUEUE_WAIT
) -> FastAPI:
    """The app, serving the one model it was created with once it starts."""
    return build(Settings(model_path, max_upload, queue_wait))


def app_from_env() -> FastAPI:
    """The app of one worker process of `digitlab serve --workers N` (uvicorn's factory), set up
    from the environment the command gives it."""
    return create_app(
        os.environ.get(ENV_MODEL) or None,
        int(os.environ.get(ENV_MAX_UPLOAD, MAX_UPLOAD)),
        float(os.environ.get(ENV_QUEUE_WAIT, QUEUE_WAIT)),
    )


def serve(
    model_path: str | Path | None,
    host: str,
    port: int,
    max_upload: int,
    workers: int = 1,
    queue_wait: float = QUEUE_WAIT,
) -> None:
    import uvicorn

    model = load(model_path)  # a bad model is one line here, not a traceback from uvicorn's startup
    if workers == 1:
        app = build(Settings(model_path, max_upload, queue_wait, model=model))
        uvicorn.run(app, host=host, port=port, log_level="info")
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
            "PROMETHEUS_MULTIPROC_DIR": folder,
        }
        with temporarily(settings):
            uvicorn.run(FACTORY, factory=True, workers=workers, host=host, port=port, log_level="info")


@contextlib.contextmanager
def running(model_path: str | Path | None = None, timeout: float = 60, options: tuple[str, ...] = ()) -> Iterator[str]:
    """`digitlab serve [options]` in a child process on a free loopback port, for tests,
    benchmarks and notebooks: yields its base URL once /readyz answers, stops it afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "digitlab.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *options]
    if model_path is not None:
        command += ["--model", str(model_path)]
    # The log goes to a file, not a pipe nobody reads: a full pipe would stall the server.
    with tempfile.TemporaryFile() as log_file:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log_file)
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
