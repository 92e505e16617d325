"""The REST API and the draw-a-digit page: `digitlab serve`.

    POST /v1/predict        one image: multipart upload, or JSON {"image": base64} / {"pixels": 28x28}
    POST /v1/predict/batch  several: multipart `files`, or JSON {"images": [...]} / {"pixels": [...]}
    GET  /v1/model          name, version, metrics, calibration, input spec
    GET  /healthz           liveness
    GET  /                  the draw-a-digit page (all assets served from the package)
    GET  /docs              OpenAPI documentation

Bad input is never a 500: every refusal is a 4xx with {"error": "..."} saying what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import __version__
from .errors import DigitlabError
from .predict import Model, load, predict_image, read

WEB = Path(__file__).parent / "web"
log = logging.getLogger("digitlab.serve")
MAX_UPLOAD = 4 * 1024 * 1024  # bytes per request; a phone photo fits, a flood does not
MAX_BATCH = 64  # images per batch request
WORKERS = 2  # threads for decoding, preprocessing and the model: one per core of a small machine


class Refused(Exception):
    """A bad request: becomes `status` with {"error": message}."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class BodyLimit:
    """ASGI middleware: refuse bodies over `limit` bytes with 413, before they are read whole,
    whether the client declares a Content-Length or streams chunks."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit
        self.message = f"request body over the {limit:,}-byte limit; send a smaller image"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # the app may answer this itself (its Refused handler): say why
                raise Refused(413, self.message)
            return message

        try:
            await self.app(scope, counted, send)
        except Refused:
            await self._refuse(send)

    async def _refuse(self, send):
        body = json.dumps({"error": self.message})
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body.encode()})


def decode_pixels(pixels) -> np.ndarray:
    """A 28x28 (or HxW) list of 0-255 numbers -> float greyscale in [0, 1]."""
    try:
        array = np.asarray(pixels, dtype=np.float64)
    except OverflowError:  # an integer beyond any float, such as 10**400
        raise Refused(422, "pixels must lie in 0-255; a number is too large for a float") from None
    except (TypeError, ValueError):
        raise Refused(422, "pixels must be a rectangular array of numbers") from None
    if array.ndim != 2 or not (8 <= array.shape[0] <= 1024 and 8 <= array.shape[1] <= 1024):
        raise Refused(
            422,
            f"pixels must be a 2-D array between 8x8 and 1024x1024 (28x28 for MNIST), got shape {list(array.shape)}",
        )
    if not np.isfinite(array).all():
        raise Refused(422, "pixels must be finite numbers (no NaN or infinity)")
    if array.min() < 0 or array.max() > 255:
        raise Refused(422, f"pixels must lie in 0-255, got {array.min():g} to {array.max():g}")
    return (array / 255).astype(np.float32)


def decode_base64(text) -> bytes:
    if not isinstance(text, str):
        raise Refused(422, "image must be a base64 string (a data: URL is fine)")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Refused(422, "image is not valid base64") from None


async def sources(request: Request, batch: bool) -> list:
    """The images of a request: file bytes or pixel arrays, from multipart or JSON."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form(max_files=MAX_BATCH + 1)
        files = [v for v in form.multi_items() if hasattr(v[1], "read")]
        if not files:
            raise Refused(422, "no file in the upload: send the image as a multipart field `file`")
        return [await f.read() for _, f in files]
    if kind == "application/json":
        try:
            body = json.loads(await request.body())
        except RecursionError:
            raise Refused(400, "the JSON nests too deep; send an object of arrays of numbers") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise Refused(400, "the body is not valid JSON") from None
        except ValueError:  # Python refuses integers of more than 4,300 digits
            raise Refused(400, "the JSON holds a number too long to read; pixels lie in 0-255") from None
        if not isinstance(body, dict):
            raise Refused(422, 'send a JSON object: {"image": "<base64>"} or {"pixels": [[...28 rows...]]}')
        if batch:
            images = body.get("images", body.get("pixels"))
            if not isinstance(images, list):
                raise Refused(422, 'send {"images": ["<base64>", ...]} or {"pixels": [<28x28>, ...]}')
            decode = decode_base64 if "images" in body else decode_pixels
            return [_or_refusal(decode, item) for item in images]  # answered one by one, as multipart is
        if "image" in body:
            return [decode_base64(body["image"])]
        if "pixels" in body:
            return [decode_pixels(body["pixels"])]
        raise Refused(422, 'send {"image": "<base64>"} or {"pixels": [[...28 rows of 0-255...]]}')
    raise Refused(415, f"unsupported content type '{kind or 'none'}'; send multipart/form-data or application/json")


def _or_refusal(decode, item):
    try:
        return decode(item)
    except Refused as e:
        return e


def answer(model: Model, source, top_k: int, number: bool) -> dict:
    try:
        result = predict_image(model, source, top_k=top_k, number=number)
    except DigitlabError as e:
        raise Refused(422, str(e)) from None
    image = result.pop("image28")
    result["input28"] = (np.clip(image, 0, 1) * 255).round().astype(int).tolist()  # what the model saw
    return result


REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "image": {"type": "string", "description": "base64 image file (PNG, JPEG, ...) or data: URL"},
                        "pixels": {
                            "type": "array",
                            "description": "28x28 array of 0-255 (any polarity)",
                            "items": {"type": "array", "items": {"type": "number"}},
                        },
                    },
                }
            },
        },
    }
}


def create_app(model_path: str | Path | None = None, max_upload: int = MAX_UPLOAD) -> FastAPI:
    """The app, serving the one model it was created with."""
    model = load(model_path)
    # Warm up once: the first call of a session or graph pays for its set-up.
    read(model, np.zeros((1, 28, 28), np.float32))
    app = FastAPI(
        title="digitlab",
        version=__version__,
        description="Reads handwritten digits from images, prepared the way MNIST was.",
    )
    app.add_middleware(BodyLimit, limit=max_upload)

    @app.exception_handler(Refused)
    async def refused(_: Request, e: Refused):
        return JSONResponse({"error": str(e)}, status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, e: RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException):
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):
        # A bug, not a bad request: the traceback goes to the server's log, a JSON 500 to the client.
        log.error("%s %s failed", request.method, request.url.path, exc_info=e)
        return JSONResponse({"error": "internal server error; the server log has the details"}, status_code=500)

    limiter: list[anyio.CapacityLimiter] = []  # made on first use: it belongs to the running event loop

    async def off_loop(work, *args):
        """CPU work in a bounded pool of threads: the event loop, and with it /healthz, never
        waits behind decoding or inference."""
        if not limiter:
            limiter.append(anyio.CapacityLimiter(WORKERS))
        return await anyio.to_thread.run_sync(work, *args, limiter=limiter[0])

    @app.get("/healthz")
    async def healthz() -> dict:  # on the event loop itself: no queue to wait in
        return {"status": "ok", "model": model.info.get("name")}

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
                "files": "PNG, JPEG, BMP, GIF, WebP, ... of any size, colour or polarity",
                "pixels": "28x28 array of 0-255",
                "max_upload_bytes": max_upload,
                "max_batch": MAX_BATCH,
            },
        }

    @app.post("/v1/predict", openapi_extra=REQUEST_BODY)
    async def predict(request: Request, top_k: int = 3, number: bool = False) -> dict:
        if not 1 <= top_k <= 10:
            raise Refused(422, f"top_k must be between 1 and 10, got {top_k}")
        found = await sources(request, batch=False)
        if len(found) != 1:
            raise Refused(422, f"send one image here ({len(found)} given); use /v1/predict/batch for several")
        return await off_loop(answer, model, found[0], top_k, number)

    @app.post("/v1/predict/batch", openapi_extra=REQUEST_BODY)
    async def predict_batch(request: Request, top_k: int = 3) -> dict:
        if not 1 <= top_k <= 10:
            raise Refused(422, f"top_k must be between 1 and 10, got {top_k}")
        found = await sources(request, batch=True)
        if not 1 <= len(found) <= MAX_BATCH:
            raise Refused(422, f"send between 1 and {MAX_BATCH} images, got {len(found)}")

        def each() -> list[dict]:
            results = []
            for source in found:
                try:
                    if isinstance(source, Refused):
                        raise source
                    results.append(answer(model, source, top_k, number=False))
                except Refused as e:  # one bad image does not sink the others
                    results.append({"error": str(e)})
            return results

        return {"results": await off_loop(each)}

    app.mount("/static", StaticFiles(directory=WEB), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB / "index.html")

    return app


def serve(model_path: str | Path | None, host: str, port: int, max_upload: int) -> None:
    import uvicorn

    uvicorn.run(create_app(model_path, max_upload), host=host, port=port, log_level="info")


@contextlib.contextmanager
def running(model_path: str | Path | None = None, timeout: float = 60) -> Iterator[str]:
    """`digitlab serve` in a child process on a free loopback port, for tests, benchmarks and
    notebooks: yields its base URL once /healthz answers, stops it afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "digitlab.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if model_path is not None:
        command += ["--model", str(model_path)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(url + "/healthz", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"digitlab serve did not start: {proc.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
