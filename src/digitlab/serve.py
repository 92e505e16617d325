"""The REST API and the draw-a-digit page: `digitlab serve`.

    POST /v1/predict        one image: multipart upload, or JSON {"image": base64} / {"pixels": 28x28}
    POST /v1/predict/batch  several: multipart `files`, or JSON {"images": [...]} / {"pixels": [...]}
    GET  /v1/model          name, version, metrics, calibration, input spec
    GET  /healthz           liveness: answered on the event loop, never behind inference
    GET  /readyz            readiness: 200 once the model is loaded and warmed, 503 while stopping
    GET  /metrics           Prometheus metrics (serve_metrics)
    /v2/...                 the Open Inference Protocol, KServe v2 (serve_v2)
    GET  /                  the draw-a-digit page (all assets served from the package)
    GET  /docs              OpenAPI documentation

Bad input is never a 500: every refusal is a 4xx with {"error": "..."} saying what is wrong, and
a saturated server answers 503 with Retry-After (serve_limits).
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

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .errors import DigitlabError
from .predict import Model, load, predict_image, read
from .serve_inputs import BATCH_BODY, MAX_BATCH, REQUEST_BODY, items, received, screened
from .serve_limits import QUEUE_WAIT, BodyLimit, Pool, Refused, refusals
from .serve_metrics import Metrics
from .serve_v2 import router

WEB = Path(__file__).parent / "web"
log = logging.getLogger("digitlab.serve")
MAX_UPLOAD = 4 * 1024 * 1024  # bytes per request; a phone photo fits, a flood does not
WORKERS = 2  # threads for decoding, preprocessing and the model: one per core of a small machine
# `digitlab serve --workers N` starts N processes that build their app from these (app_from_env).
ENV_MODEL, ENV_MAX_UPLOAD, ENV_QUEUE_WAIT = (
    "DIGITLAB_SERVE_MODEL",
    "DIGITLAB_SERVE_MAX_UPLOAD",
    "DIGITLAB_SERVE_QUEUE_WAIT",
)


def answer(model: Model, source, top_k: int, number: bool) -> dict:
    try:
        result = predict_image(model, source, top_k=top_k, number=number)
    except DigitlabError as e:
        raise Refused(422, str(e)) from None
    image = result.pop("image28")
    result["input28"] = (np.clip(image, 0, 1) * 255).round().astype(int).tolist()  # what the model saw
    return result


def create_app(
    model_path: str | Path | None = None, max_upload: int = MAX_UPLOAD, queue_wait: float = QUEUE_WAIT
) -> FastAPI:
    """The app, serving the one model it was created with."""
    model = load(model_path)
    # Warm up once: the first call of a session or graph pays for its set-up.
    read(model, np.zeros((1, 28, 28), np.float32))
    ready = [False]

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        ready[0] = True  # loaded and warmed above
        yield
        ready[0] = False  # stopping: a load balancer's readiness probe takes it out of rotation

    app = FastAPI(
        title="digitlab",
        version=__version__,
        description="Reads handwritten digits from images, prepared the way MNIST was.",
        lifespan=lifespan,
    )
    metrics = Metrics()
    pool = Pool(WORKERS, queue_wait, metrics.waiting)
    app.add_middleware(BodyLimit, limit=max_upload)
    app.add_middleware(metrics.middleware)  # outermost: 413s from the body limit are counted too

    @app.exception_handler(Refused)
    async def refused(_: Request, e: Refused):
        return JSONResponse({"error": str(e)}, status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException):
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=e.headers)  # 405: Allow

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):
        # A bug, not a bad request: the traceback goes to the server's log, a JSON 500 to the client.
        log.error("%s %s failed", request.method, request.url.path, exc_info=e)
        return JSONResponse({"error": "internal server error; the server log has the details"}, status_code=500)

    # Probes and metrics run on the event loop itself: no worker to wait for, however busy.
    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "model": model.info.get("name")}

    @app.get("/readyz", responses=refusals(503))
    async def readyz() -> JSONResponse:
        if not ready[0]:
            return JSONResponse({"error": "not ready: the server is starting or stopping"}, status_code=503)
        return JSONResponse({"status": "ready", "model": model.info.get("name")})

    @app.get("/metrics", include_in_schema=False)
    async def scrape() -> Response:
        return Response(metrics.scrape(), media_type=metrics.content_type)

    @app.get("/v1/model")
    def model_card() -> dict:
        return {
            "name": model.info.get("name"),
            "format": model.path.suffix.lstrip("."),
            "digitlab_version": __version__,
            "metrics": model.info.get("metrics"),
            "command": model.info.get("command"),
            "temperature": model.info["temperature"],
            "threshold": model.info["threshold"],
            "input": {
                "files": "PNG, JPEG, BMP, GIF, WebP or TIFF of any size, colour or polarity",
                "pixels": "28x28 array of 0-255",
                "max_upload_bytes": max_upload,
                "max_batch": MAX_BATCH,
            },
        }

    def check_top_k(top_k: int) -> None:
        if not 1 <= top_k <= 10:
            raise Refused(422, f"top_k must be between 1 and 10, got {top_k}")

    # Each answer is encoded to JSON on the worker too: FastAPI's encoder would take ~1 ms of the
    # event loop per answer, which /healthz would wait behind under load.
    def read_one(payload, top_k: int, number: bool) -> JSONResponse:
        found = items(payload, batch=False)
        if len(found) != 1:
            raise Refused(422, f"send one image here ({len(found)} given); use /v1/predict/batch for several")
        (source,) = screened(found)
        if isinstance(source, Refused):
            raise source
        result = answer(model, source, top_k, number)
        metrics.count(result)
        return JSONResponse(result)

    def read_each(payload, top_k: int) -> JSONResponse:
        found = items(payload, batch=True)
        if not 1 <= len(found) <= MAX_BATCH:
            raise Refused(422, f"send between 1 and {MAX_BATCH} images, got {len(found)}")
        results = []
        for source in screened(found):
            try:
                if isinstance(source, Refused):
                    raise source
                results.append(answer(model, source, top_k, number=False))
                metrics.count(results[-1])
            except Refused as e:  # one bad image does not sink the others
                results.append({"error": str(e)})
        return JSONResponse({"results": results})

    v1_refusals = refusals(400, 413, 415, 422, 503)

    @app.post("/v1/predict", response_model=dict, openapi_extra=REQUEST_BODY, responses=v1_refusals)
    async def predict(request: Request, top_k: int = 3, number: bool = False) -> Response:
        check_top_k(top_k)
        return await pool.run(read_one, await received(request), top_k, number)

    @app.post("/v1/predict/batch", response_model=dict, openapi_extra=BATCH_BODY, responses=v1_refusals)
    async def predict_batch(request: Request, top_k: int = 3) -> Response:
        check_top_k(top_k)
        return await pool.run(read_each, await received(request), top_k)

    app.include_router(router(model, pool, lambda: ready[0]))
    app.mount("/static", StaticFiles(directory=WEB), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB / "index.html")

    return app


def app_from_env() -> FastAPI:
    """The app of one worker process of `digitlab serve --workers N` (uvicorn's factory), set up
    from the environment the command leaves for it."""
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

    if workers == 1:
        uvicorn.run(create_app(model_path, max_upload, queue_wait), host=host, port=port, log_level="info")
        return
    load(model_path)  # a bad model is one line here, not a traceback from every worker
    # Worker processes load their own app from an import string; Prometheus sums their metrics
    # through files in a folder of this run's own (its multiprocess mode).
    with tempfile.TemporaryDirectory(prefix="digitlab-metrics-") as folder:
        os.environ.update(
            {
                ENV_MODEL: str(model_path or ""),
                ENV_MAX_UPLOAD: str(max_upload),
                ENV_QUEUE_WAIT: str(queue_wait),
                "PROMETHEUS_MULTIPROC_DIR": folder,
            }
        )
        uvicorn.run(
            "digitlab.serve:app_from_env", factory=True, workers=workers, host=host, port=port, log_level="info"
        )


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
