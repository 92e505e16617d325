"""The Open Inference Protocol (KServe v2, REST) beside digitlab's own API, so standard clients
(tritonclient, KServe's) and platforms work unchanged.

    GET  /v2                              server metadata
    GET  /v2/health/live, /v2/health/ready
    GET  /v2/models/digitlab              model metadata: input `images` FP32 [-1, 28, 28, 1]
    GET  /v2/models/digitlab/ready
    POST /v2/models/digitlab/infer        `images` -> `probabilities` FP32 [N, 10]

The model is `digitlab` whatever file it was loaded from. It takes images already prepared the
MNIST way (28x28, white ink on black, 0-1) and answers the calibrated probabilities that the v1
API reports (softmax(log p / T), T from the model's calibration); preparing a photo and declining
non-digits are the v1 API's. Tensor data comes as JSON (`data`, flat or nested) or in the binary
tensor extension (`binary_data_size`, tritonclient's default); outputs come back as binary when
asked (`binary_data_output` or an output's `binary_data`). Errors are {"error": "..."}.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, Response

from digitlab.io.native import Model
from digitlab.nn.calibration import scale_temperature
from digitlab.serve.limits import Refused, byte_count, parse_json, refusals
from digitlab.serve.state import ModelDep, PoolDep, ReadyDep
from digitlab.version import __version__

NAME, INPUT, OUTPUT = "digitlab", "images", "probabilities"
MAX_IMAGES = 1024  # per request: 3.2 MB as binary FP32, under the default 4 MB body limit
# The route's parameter is the protocol's; this server has one model, and says so in its schema.
ModelName = Annotated[str, Path(json_schema_extra={"enum": [NAME]})]
EXAMPLE = '{"inputs": [{"name": "images", "datatype": "FP32", "shape": [N, 28, 28, 1], "data": [...]}]}'

TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string", "enum": [INPUT]},
        "shape": {"type": "array", "items": {"type": "integer"}, "example": [1, 28, 28, 1]},
        "datatype": {"type": "string", "enum": ["FP32"]},
        "data": {"type": "array", "description": "N*784 numbers in 0-1, flat or nested, row-major"},
        "parameters": {"type": "object", "description": "binary_data_size: the tensor's bytes after the JSON"},
    },
}
INFER = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {"type": "object"},
                        "inputs": {"type": "array", "items": TENSOR, "minItems": 1, "maxItems": 1},
                        "outputs": {"type": "array", "items": {"type": "object"}},
                    },
                }
            }
        },
    },
    "responses": {
        "200": {
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["model_name", "outputs"],
                        "properties": {
                            "model_name": {"type": "string"},
                            "id": {"type": "string"},
                            "outputs": {"type": "array", "items": {"type": "object", "required": ["name", "shape"]}},
                        },
                    }
                },
                # The binary tensor extension: the JSON header (Inference-Header-Content-Length
                # bytes), then the FP32 probabilities.
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            }
        },
    },
}


def tensor(body, binary: bytes) -> np.ndarray:
    """The `images` input of an inference request as float32 (N, 28, 28, 1) in [0, 1]."""
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or len(body["inputs"]) != 1:
        raise Refused(400, f"send one input tensor: {EXAMPLE}")
    spec = body["inputs"][0]
    if not isinstance(spec, dict) or spec.get("name") != INPUT:
        raise Refused(400, f"the input must be named '{INPUT}': {EXAMPLE}")
    if spec.get("datatype") != "FP32":
        raise Refused(400, f"input '{INPUT}' must be FP32, got {str(spec.get('datatype'))[:20]!r}")
    shape = spec.get("shape")
    if (
        not isinstance(shape, list)
        or not all(type(d) is int for d in shape)
        or shape[1:] != [28, 28, 1]
        or not 1 <= shape[0] <= MAX_IMAGES
    ):
        raise Refused(400, f"shape must be [N, 28, 28, 1] with N in 1-{MAX_IMAGES}, got {str(shape)[:60]}")
    count = math.prod(shape)
    parameters = spec.get("parameters") or {}
    size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
    if size is not None:
        if size != 4 * count or len(binary) != size:
            raise Refused(400, f"binary_data_size must be {4 * count} (FP32 {shape}) and match the bytes sent")
        array = np.frombuffer(binary, "<f4")
    else:
        try:
            array = np.asarray(spec.get("data"))
        except (ValueError, OverflowError, TypeError, RecursionError):  # ragged, too deep, past any float
            raise Refused(400, "data must be numbers in 0-1, a flat or rectangular nested list") from None
        if array.dtype.kind not in "iuf" or array.size != count:
            raise Refused(400, f"data must hold {count} numbers in 0-1 (shape {shape}), flat or nested")
    images = array.astype(np.float32).reshape(shape)
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise Refused(400, "pixels must be finite and lie in 0-1: MNIST's scale, 0-255 divided by 255")
    return images


def wants_binary(body: dict) -> bool:
    parameters = body.get("parameters")
    outputs = body.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list) or any(not isinstance(o, dict) or o.get("name") != OUTPUT for o in outputs):
            raise Refused(400, f"this model has one output, '{OUTPUT}'")
        if any(isinstance(o.get("parameters"), dict) and o["parameters"].get("binary_data") for o in outputs):
            return True
    return isinstance(parameters, dict) and parameters.get("binary_data_output") is True


router = APIRouter(
    prefix="/v2", tags=["Open Inference Protocol (KServe v2)"], responses=refusals(400, 404, 413, 422, 503)
)


def platform(model: Model) -> str:
    """Triton's platform name: ONNX files run on ONNX Runtime (digitlab's and adapted foreign ones)."""
    if hasattr(model, "session"):
        return "onnxruntime_onnx"
    return "tensorflow_savedmodel" if model.path.is_dir() else "tensorflow_keras"


def known(model_name: str) -> None:
    if model_name != NAME:
        raise Refused(404, f"no model '{model_name[:40]}' here; this server serves '{NAME}'")


def readiness(body: dict, ready: bool) -> JSONResponse:
    return JSONResponse(body | {"ready": ready}, status_code=200 if ready else 503)


@router.get("")
async def server_metadata() -> dict:
    return {"name": NAME, "version": __version__, "extensions": ["binary_tensor_data"]}


@router.get("/health/live")
async def live() -> dict:
    return {"live": True}


@router.get("/health/ready")
async def server_ready(ready: ReadyDep) -> JSONResponse:
    return readiness({}, ready)


@router.get("/models/{model_name}")
async def metadata(model_name: ModelName, model: ModelDep) -> dict:
    known(model_name)
    return {
        "name": NAME,
        "platform": platform(model),
        "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, 28, 28, 1]}],
        "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [-1, 10]}],
    }


@router.get("/models/{model_name}/ready")
async def model_ready(model_name: ModelName, ready: ReadyDep) -> JSONResponse:
    known(model_name)
    return readiness({"name": NAME}, ready)


def infer_work(model: Model, raw: bytes, header_length: int | None) -> Response:
    """All of it on a worker, the answer's JSON encoding included: the event loop only relays."""
    split = len(raw) if header_length is None else header_length
    body = parse_json(raw[:split], EXAMPLE)
    images = tensor(body, raw[split:])
    binary = wants_binary(body)
    probs = scale_temperature(model.probabilities(images), model.info["temperature"]).astype("<f4")
    output = {"name": OUTPUT, "datatype": "FP32", "shape": list(probs.shape)}
    output |= {"parameters": {"binary_data_size": probs.nbytes}} if binary else {"data": probs.ravel().tolist()}
    answer = {"model_name": NAME, "outputs": [output]}
    if isinstance(body.get("id"), str):
        answer["id"] = body["id"]
    if not binary:
        return JSONResponse(answer)
    head = JSONResponse(answer).body
    return Response(
        head + probs.tobytes(),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(head))},
    )


@router.post("/models/{model_name}/infer", openapi_extra=INFER)
async def infer(model_name: ModelName, request: Request, model: ModelDep, pool: PoolDep) -> Response:
    known(model_name)
    name = "Inference-Header-Content-Length"
    header = byte_count(request.headers.get(name), name)  # before the body: a bad one is refused at once
    raw = await request.body()
    if header is not None and header > len(raw):
        raise Refused(400, f"{name} must be the JSON header's length in bytes, at most the body's {len(raw):,}")
    return await pool.run(infer_work, model, raw, header)
