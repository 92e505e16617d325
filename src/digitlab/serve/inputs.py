"""What a request to digitlab's v1 API sends, read into images: multipart files, base64 image
files in JSON, or JSON arrays of pixels; each image's format and size checked before decoding."""

from __future__ import annotations

import base64
import binascii
from typing import NamedTuple

import numpy as np
from fastapi import Request

from digitlab.serve.limits import Refused, image_pixels, parse_json, request_pixels

MAX_BATCH = 64  # images per batch request
EXAMPLE = '{"image": "<base64>"} or {"pixels": [[...28 rows of 0-255...]]}'


def decode_pixels(pixels) -> np.ndarray:
    """A 28x28 (or HxW) list of 0-255 numbers -> float greyscale in [0, 1]; a 0-1 array is refused."""
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
    # The usual `x / 255` array would read as near-black, a blank image: refused, not guessed at.
    # All 0s and 1s stays 0-255, as nothing tells it apart from a faint image.
    if array.max() <= 1 and not np.array_equal(array, np.round(array)):
        raise Refused(
            422,
            "pixels here are 0-255, but these lie in 0-1 (an x/255 array): multiply them by 255, "
            "or send them to /v2/models/digitlab/infer, which takes 0-1",
        )
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


async def received(request: Request) -> list[bytes] | bytes:
    """A request's uploads: the multipart files (parsed as they stream), or the raw JSON body,
    parsed later by `items` on a worker, as a large one takes a while."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form(max_files=MAX_BATCH + 1)
        files = [v for v in form.multi_items() if hasattr(v[1], "read")]
        if not files:
            raise Refused(422, "no file in the upload: send the image as a multipart field `file`")
        return [await f.read() for _, f in files]
    if kind == "application/json":
        return await request.body()
    raise Refused(415, f"unsupported content type '{kind or 'none'}'; send multipart/form-data or application/json")


def items(payload: list[bytes] | bytes, batch: bool) -> list:
    """The images of a request: file bytes, pixel arrays, or (in a batch) the Refused of an item."""
    if isinstance(payload, list):
        return payload
    body = parse_json(payload, EXAMPLE)
    if not isinstance(body, dict):
        raise Refused(422, f"send a JSON object: {EXAMPLE}")
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
    raise Refused(422, f"send {EXAMPLE}")


class Upload(NamedTuple):
    """One image of a request, checked: its bytes (or pixels), and whether it is large to decode."""

    source: bytes | np.ndarray
    large: bool = False


def screened(found: list) -> list[Upload | Refused]:
    """Each image's format and size checked from its header, and the request's pixels in all,
    before any is decoded; a bad item becomes its Refused."""
    checked, pixels = [], []
    for source in found:
        try:
            if isinstance(source, Refused):
                raise source
            size, large = (source.size, False) if isinstance(source, np.ndarray) else image_pixels(source)
            pixels.append(size)
            checked.append(Upload(source, large))
        except Refused as e:
            checked.append(e)
    request_pixels(pixels)
    return checked


def _or_refusal(decode, item):
    try:
        return decode(item)
    except Refused as e:
        return e


def body_schema(multipart: dict, json: dict) -> dict:
    """OpenAPI `requestBody` for a route taking multipart uploads or JSON."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": {"type": "object", "properties": multipart}},
                "application/json": {"schema": {"type": "object", "properties": json}},
            },
        }
    }


BINARY = {"type": "string", "format": "binary"}
REQUEST_BODY = body_schema(
    {"file": BINARY},
    {
        "image": {"type": "string", "description": "base64 image file (PNG, JPEG, ...) or data: URL"},
        "pixels": {
            "type": "array",
            "description": "28x28 array of 0-255, not 0-1 (multiply an x/255 array by 255); any polarity",
            "items": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 255}},
        },
    },
)
# A batch's items are each answered on their own, a bad one with its own error: the schema
# leaves them open, as the server checks each.
BATCH_BODY = body_schema(
    {"files": {"type": "array", "items": BINARY}},
    {
        "images": {"type": "array", "maxItems": MAX_BATCH, "items": {}, "description": "base64 image files"},
        "pixels": {
            "type": "array",
            "maxItems": MAX_BATCH,
            "items": {},
            "description": "28x28 arrays of 0-255, not 0-1",
        },
    },
)
