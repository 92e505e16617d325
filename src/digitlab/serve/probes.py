"""The routes for whoever runs the server, and the draw-a-digit page.

GET /healthz    liveness: answered on the event loop, never behind inference
GET /readyz     readiness: 200 once the model is loaded and warmed, 503 while stopping
GET /metrics    Prometheus metrics (metrics.py)
GET /           the draw-a-digit page (its assets are mounted at /static by the app)
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response

from digitlab.serve.limits import refusals
from digitlab.serve.state import MetricsDep, ModelDep, ReadyDep

WEB = Path(__file__).parent / "web"

router = APIRouter()


# Probes and metrics are coroutines, run on the event loop itself: no worker to wait for, however busy.
@router.get("/healthz")
async def healthz(model: ModelDep) -> dict:
    return {"status": "ok", "model": model.info.get("name")}


@router.get("/readyz", responses=refusals(503))
async def readyz(model: ModelDep, ready: ReadyDep) -> JSONResponse:
    if not ready:
        return JSONResponse({"error": "not ready: the server is starting or stopping"}, status_code=503)
    return JSONResponse({"status": "ready", "model": model.info.get("name")})


@router.get("/metrics", include_in_schema=False)
async def scrape(metrics: MetricsDep) -> Response:
    return Response(metrics.scrape(), media_type=metrics.content_type)


page = APIRouter(include_in_schema=False)


@page.get("/")
def index() -> FileResponse:
    return FileResponse(WEB / "index.html")
