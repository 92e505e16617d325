"""What the server's routes share, kept on `app.state`: the settings the app was created with,
and what its lifespan makes from them (the model, loaded and warmed up; the worker pool; the
metrics; readiness). Routes reach them through the dependencies below, so building the app or its
OpenAPI schema loads nothing, and each router stands on its own (FastAPI's "bigger applications").
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Request

from digitlab.io.load import load
from digitlab.io.native import Model
from digitlab.read import line
from digitlab.read.predict import read
from digitlab.serve.limits import BODY_TIMEOUT, QUEUE_WAIT, Pool, Refused
from digitlab.serve.metrics import Metrics

MAX_UPLOAD = 4 * 1024 * 1024  # bytes per request; a phone photo fits, a flood does not
WORKERS = 2  # threads for decoding, preprocessing and the model: one per core of a small machine


@dataclass(frozen=True)
class Settings:
    model_path: str | Path | None = None
    max_upload: int = MAX_UPLOAD
    queue_wait: float = QUEUE_WAIT
    body_timeout: float = BODY_TIMEOUT
    # A model `serve` has loaded already, to refuse a bad one in one line before uvicorn starts.
    model: Model | None = None
    # Reading threads and ONNX Runtime's (0: WORKERS, and one per core): a process of several takes its share.
    threads: int = 0


def warm_up(model: Model) -> None:
    """Read one blank image: the first call of a session or graph pays for its set-up, and a
    graph that loops or asks for terabytes fails here, as one error, not on a user's request.
    The line reader (the shipped one, for numbers and declined digits' hints) is warmed too."""
    read(model, np.zeros((1, 28, 28), np.float32))
    line.warm_up()


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    settings: Settings = app.state.settings
    model = settings.model if settings.model is not None else load(settings.model_path, threads=settings.threads)
    warm_up(model)
    metrics = Metrics()
    app.state.model, app.state.metrics = model, metrics
    app.state.pool = Pool(settings.threads or WORKERS, settings.queue_wait, metrics.waiting, metrics.busy)
    app.state.ready = True
    yield
    app.state.ready = False  # stopping: a load balancer's readiness probe takes it out of rotation


def _state(request: Request, name: str) -> Any:
    try:
        return getattr(request.app.state, name)
    except AttributeError:  # the lifespan has not run (a TestClient used outside `with`)
        raise Refused(503, "not ready: the server is starting or stopping") from None


# Dependencies are coroutines so that they run on the event loop: a plain function would be sent
# to a thread, and the probes would wait for one under load.
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_model(request: Request) -> Model:
    return _state(request, "model")


async def get_pool(request: Request) -> Pool:
    return _state(request, "pool")


async def get_metrics(request: Request) -> Metrics:
    return _state(request, "metrics")


async def is_ready(request: Request) -> bool:
    return getattr(request.app.state, "ready", False)


SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelDep = Annotated[Model, Depends(get_model)]
PoolDep = Annotated[Pool, Depends(get_pool)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ReadyDep = Annotated[bool, Depends(is_ready)]
