"""What one request to `digitlab serve` may cost, and the refusals when it asks for more.

Each limit is checked before the work it bounds: the body while it streams in, JSON while it is
parsed, an image's format and size from its header before a pixel is decoded, a worker before
the work is queued. A refusal is a `Refused`: a 4xx (or 503) with {"error": "..."}.
"""

from __future__ import annotations

import io
import json
import re
import struct
import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import anyio
from PIL import Image, UnidentifiedImageError
from prometheus_client import Gauge

from digitlab.image.decode import FORMATS

# Per image: a 12 Mpx photo fits. Decoded whole at up to 4 bytes a pixel (64 MB), then reduced.
MAX_IMAGE_PIXELS = 16_000_000
# An image over this many pixels is read by one worker thread of a process at a time, so that a
# process holds one large read, not one per thread, and two processes stay under 500 MB: one
# under 2048 px a side is read unreduced, as float RGBA where it has alpha (~140 MB at 4 Mpx),
# one over it reduced (~80 MB at 16 Mpx). A JPEG is exempt: it is decoded at a half to an
# eighth of its size (decode._draft).
LARGE_IMAGE_PIXELS = 1_000_000
# Per request: about 2 s of one worker's decoding at ~25 ms per megapixel (RGBA PNG); 64 scans of
# 1 Mpx, or four photos.
MAX_REQUEST_PIXELS = 64_000_000
# How long a request may wait for a worker once all are busy. At concurrency 32 the wait is
# 32 requests' work: ~60 ms at 500 requests/s, ~1 s on a loaded 2-core machine at 35/s. Five
# times that worst case means the server is saturated, not busy, and a client or load balancer
# does better retrying (elsewhere) than waiting behind a backlog that keeps growing.
QUEUE_WAIT = 5.0
RETRY_AFTER = 1  # seconds, in the 503's Retry-After: about how long a heavy request holds a worker
# How long a request's body may take to arrive once its headers have: a 4 MB photo over a slow
# 1 Mbit/s link takes ~35 s. A slower client (or one that stops sending) holds a connection and
# its buffered body, and gets 408 instead.
BODY_TIMEOUT = 60.0
DIGITS = re.compile(rb"[0-9]{1,15}")  # a byte count in a header: ASCII digits only, as RFC 9110 says


ERROR = {
    "description": "refused: what is wrong and what to send instead",
    "content": {
        "application/json": {
            "schema": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
        }
    },
}


def refusals(*statuses: int) -> dict:
    """OpenAPI `responses` for the refusals a route may answer, each {"error": "..."}."""
    return {status: ERROR for status in statuses}


class Refused(Exception):
    """A request the server will not do: becomes `status` with {"error": message}."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers


def byte_count(value: bytes | str | None, name: str) -> int | None:
    """A header that counts bytes (Content-Length, Inference-Header-Content-Length), read strictly:
    ASCII digits only ("²" is a digit to `str.isdigit`, not to HTTP) and at most 15 of them, so no
    value reaches `int` that it cannot take; anything else is a 400."""
    if value is None:
        return None
    raw = value.encode("latin-1") if isinstance(value, str) else value  # headers arrive as latin-1
    if not DIGITS.fullmatch(raw):
        shown = raw[:20].decode("ascii", "backslashreplace")
        raise Refused(400, f"{name} must be a byte count in ASCII digits, got '{shown}'")
    return int(raw)


class BodyLimit:
    """ASGI middleware: refuse bodies over `limit` bytes with 413, before they are read whole,
    whether the client declares a Content-Length or streams chunks; and bodies that take over
    `timeout` seconds to arrive with 408, so a slow sender cannot hold a connection forever."""

    def __init__(self, app, limit: int, timeout: float = BODY_TIMEOUT):
        self.app, self.limit, self.timeout = app, limit, timeout
        self.message = (
            f"request body over the {limit:,}-byte limit; send a smaller image, "
            "or start the server with a larger `digitlab serve --max-upload BYTES`"
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            declared = byte_count(dict(scope["headers"]).get(b"content-length"), "Content-Length")
        except Refused as e:
            return await self._refuse(send, e)
        if declared is not None and declared > self.limit:
            return await self._refuse(send, Refused(413, self.message))
        seen, deadline, whole = 0, anyio.current_time() + self.timeout, False

        async def counted():
            nonlocal seen, whole
            if whole:  # after the body, the app only listens for a disconnect: no deadline
                return await receive()
            with anyio.move_on_after(deadline - anyio.current_time()):
                message = await receive()
                seen += len(message.get("body", b""))
                whole = not message.get("more_body", False)
                if seen > self.limit:  # the app may answer this itself (its Refused handler): say why
                    raise Refused(413, self.message)
                return message
            raise Refused(  # Connection: close, as the rest of the body may still be on its way
                408, f"the request body did not arrive within {self.timeout:g} s", {"Connection": "close"}
            )

        try:
            await self.app(scope, counted, send)
        except Refused as e:
            await self._refuse(send, e)

    async def _refuse(self, send, refusal: Refused):
        body = json.dumps({"error": str(refusal)}).encode()
        headers = [(b"content-type", b"application/json")]
        headers += [(k.lower().encode(), v.encode()) for k, v in (refusal.headers or {}).items()]
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def parse_json(raw: bytes, example: str) -> Any:
    """JSON whose depth and numbers Python can hold; `example` is the shape to send instead."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise Refused(400, f"the JSON nests too deep; send {example}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Refused(400, f"the body is not valid JSON; send {example}") from None
    except ValueError:  # Python refuses integers of more than 4,300 digits
        raise Refused(400, "the JSON holds a number too long to read; pixels lie in 0-255 (0-1 for /v2)") from None


def image_pixels(data: bytes) -> tuple[int, bool]:
    """An uploaded image's pixel count, read from its header alone, once its format is one of
    FORMATS and its size within MAX_IMAGE_PIXELS: the check before any pixel is decoded. And
    whether it is large to decode (LARGE_IMAGE_PIXELS)."""
    accepted = "send PNG, JPEG, BMP, GIF, WebP or TIFF"
    too_large = f"over {MAX_IMAGE_PIXELS:,} pixels; a digit needs far fewer, so scale it down"
    if not data:
        raise Refused(422, f"the image is empty (0 bytes); {accepted}")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            (width, height), kind = image.size, image.format
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # Pillow's own check, higher
        raise Refused(422, f"image too large: {too_large}") from None
    except UnidentifiedImageError:  # its message names a Python object, not the problem
        known = sniff(data)
        if known:
            raise Refused(415, f"image format {known} is not accepted; {accepted}") from None
        raise Refused(422, f"not a readable image in a known format; {accepted}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise Refused(422, f"not a readable image ({type(e).__name__}: {e}); {accepted}") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise Refused(422, f"image too large: {width}x{height} is {too_large}")
    return width * height, width * height > LARGE_IMAGE_PIXELS and kind != "JPEG"


def sniff(data: bytes) -> str | None:
    """Which of Pillow's other formats a refused file claims to be, by its magic bytes alone
    (each plugin's accept test): named in the error, never parsed."""
    Image.init()
    for name in Image.ID:
        accept = Image.OPEN[name][1]
        try:
            if name not in FORMATS and accept is not None and accept(data[:16]):
                return name
        except (SyntaxError, IndexError, TypeError, struct.error):  # too short for its test, as Pillow allows
            continue
    return None


def request_pixels(pixels: list[int]) -> None:
    total = sum(pixels)
    if total > MAX_REQUEST_PIXELS:
        raise Refused(
            413,
            f"the images hold {total:,} pixels, over the {MAX_REQUEST_PIXELS:,} a request may; "
            "send fewer or smaller images",
        )


class Pool:
    """A bounded pool of worker threads for CPU work (decoding, preprocessing, the model), so the
    event loop and with it /healthz never wait behind it. When every worker is busy a request
    waits up to `wait` seconds, then gets 503 with Retry-After: back-pressure, not a queue
    that grows until clients time out."""

    def __init__(self, workers: int, wait: float = QUEUE_WAIT, waiting: Gauge | None = None, busy: Gauge | None = None):
        self.workers, self.wait = workers, wait
        self.waiting, self.busy = waiting, busy  # how many wait for a worker now; how many workers work
        self._admit: anyio.CapacityLimiter | None = None  # made on first use: it belongs to the running loop
        self._threads: anyio.CapacityLimiter | None = None
        self._large = threading.Lock()

    def reading(self, large: bool) -> AbstractContextManager:
        """Held by a worker thread while it reads an image: one large image at a time
        (LARGE_IMAGE_PIXELS), any number of others."""
        return self._large if large else nullcontext()

    async def run(self, work, *args):
        if self._admit is None or self._threads is None:
            self._admit, self._threads = anyio.CapacityLimiter(self.workers), anyio.CapacityLimiter(self.workers)
        admitted = False
        with anyio.move_on_after(self.wait), self.waiting.track_inprogress() if self.waiting else nullcontext():
            await self._admit.acquire()
            admitted = True
        if not admitted:
            raise Refused(
                503,
                f"the server is busy: every worker stayed taken for {self.wait:g} s; retry after {RETRY_AFTER} s",
                {"Retry-After": str(RETRY_AFTER)},
            )
        try:
            with self.busy.track_inprogress() if self.busy else nullcontext():
                return await anyio.to_thread.run_sync(work, *args, limiter=self._threads)
        finally:
            self._admit.release()
