"""digitlab's own API: photos, scans and drawings in, digits out, prepared the way MNIST was.

POST /v1/predict        one image: multipart upload, or JSON {"image": base64} / {"pixels": 28x28 of 0-255}
POST /v1/read           every number in one image, in reading order, with boxes
POST /v1/predict/batch  several: multipart `files`, or JSON {"images": [...]} / {"pixels": [...]}
GET  /v1/model          name, version, metrics, calibration, input spec
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from digitlab.errors import DigitlabError
from digitlab.io.native import Model
from digitlab.read.number import read_numbers
from digitlab.read.predict import predict_image
from digitlab.serve.inputs import BATCH_BODY, MAX_BATCH, REQUEST_BODY, Upload, items, received, screened
from digitlab.serve.limits import Pool, Refused, refusals
from digitlab.serve.metrics import Metrics
from digitlab.serve.state import MetricsDep, ModelDep, PoolDep, SettingsDep
from digitlab.version import __version__

router = APIRouter(prefix="/v1")


def answer(model: Model, source, top_k: int, number: bool) -> dict:
    try:
        result = predict_image(model, source, top_k=top_k, number=number)
    except DigitlabError as e:
        raise Refused(422, str(e)) from None
    image = result.pop("image28")
    result["input28"] = (np.clip(image, 0, 1) * 255).round().astype(int).tolist()  # what the model saw
    return result


@router.get("/model")
def model_card(model: ModelDep, settings: SettingsDep) -> dict:
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
            "pixels": "28x28 array of 0-255, not 0-1: multiply an x/255 array by 255 (/v2 takes 0-1)",
            "max_upload_bytes": settings.max_upload,
            "max_batch": MAX_BATCH,
        },
    }


def check_top_k(top_k: int) -> None:
    if not 1 <= top_k <= 10:
        raise Refused(422, f"top_k must be between 1 and 10, got {top_k}")


# Each answer is encoded to JSON on the worker too: FastAPI's encoder would take ~1 ms of the
# event loop per answer, which /healthz would wait behind under load.
def one_image(payload) -> Upload:
    """The one image a request sent, checked (limits.py), or the refusal to answer."""
    found = items(payload, batch=False)
    if len(found) != 1:
        raise Refused(422, f"send one image here ({len(found)} given); use /v1/predict/batch for several")
    (upload,) = screened(found)
    if isinstance(upload, Refused):
        raise upload
    return upload


def read_one(pool: Pool, model: Model, metrics: Metrics, payload, top_k: int, number: bool) -> JSONResponse:
    upload = one_image(payload)
    with pool.reading(upload.large):
        result = answer(model, upload.source, top_k, number)
    metrics.count(result)
    return JSONResponse(result)


def read_each(pool: Pool, model: Model, metrics: Metrics, payload, top_k: int) -> JSONResponse:
    found = items(payload, batch=True)
    if not 1 <= len(found) <= MAX_BATCH:
        raise Refused(422, f"send between 1 and {MAX_BATCH} images, got {len(found)}")
    results = []
    for upload in screened(found):
        try:
            if isinstance(upload, Refused):
                raise upload
            with pool.reading(upload.large):
                results.append(answer(model, upload.source, top_k, number=False))
            metrics.count(results[-1])
        except Refused as e:  # one bad image does not sink the others
            results.append({"error": str(e)})
    return JSONResponse({"results": results})


REFUSALS = refusals(400, 413, 415, 422, 503)


@router.post("/predict", response_model=dict, openapi_extra=REQUEST_BODY, responses=REFUSALS)
async def predict(
    request: Request, model: ModelDep, pool: PoolDep, metrics: MetricsDep, top_k: int = 3, number: bool = False
) -> Response:
    """One image: a multipart `file`, or JSON `{"image": "<base64>"}` or `{"pixels": [[...]]}`, a
    28x28 array of 0-255 (not 0-1: multiply an x/255 array by 255)."""
    check_top_k(top_k)
    return await pool.run(read_one, pool, model, metrics, await received(request), top_k, number)


@router.post("/predict/batch", response_model=dict, openapi_extra=BATCH_BODY, responses=REFUSALS)
async def predict_batch(
    request: Request, model: ModelDep, pool: PoolDep, metrics: MetricsDep, top_k: int = 3
) -> Response:
    """Several images, each answered on its own: multipart `files`, or JSON `{"images": [...]}`
    (base64) or `{"pixels": [...]}` (28x28 arrays of 0-255, not 0-1)."""
    check_top_k(top_k)
    return await pool.run(read_each, pool, model, metrics, await received(request), top_k)


def read_all(pool: Pool, model: Model, payload) -> JSONResponse:
    upload = one_image(payload)
    try:
        with pool.reading(upload.large):
            result = read_numbers(model, upload.source)
    except DigitlabError as e:
        raise Refused(422, str(e)) from None
    for number in result["numbers"]:
        number.pop("image28")
    return JSONResponse(result)


@router.post("/read", response_model=dict, openapi_extra=REQUEST_BODY, responses=REFUSALS)
async def read_page(request: Request, model: ModelDep, pool: PoolDep) -> Response:
    """Every number in one image (a page, a form, a meter), in reading order: lines top to
    bottom, left to right; each with its digits, confidence and box (top, left, bottom, right) in
    the image as sent. Same bodies as /v1/predict."""
    return await pool.run(read_all, pool, model, await received(request))
