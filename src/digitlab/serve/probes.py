"""The routes for whoever runs the server, and the draw-a-digit page.

GET /healthz    liveness: answered on the event loop, never behind inference
GET /readyz     readiness: 200 once the model is loaded and warmed, 503 while stopping
GET /metrics    Prometheus metrics (metrics.py)
GET /           the draw-a-digit page (its assets are mounted at /static by the app)
GET /docs       Swagger UI, and /redoc ReDoc: their scripts from fastapi-offline's package, no CDN
GET /favicon.ico
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from PIL import Image, ImageDraw

from digitlab.serve.limits import refusals
from digitlab.serve.state import MetricsDep, ModelDep, ReadyDep

WEB = Path(__file__).parent / "web"
# Swagger UI's and ReDoc's files, as the fastapi-offline package ships them (mounted by the app).
DOCS_PACKAGE, DOCS_ASSETS = ("fastapi_offline", "static"), "/docs/assets"

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


@page.get("/docs")
async def swagger(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=root + request.app.openapi_url,
        title=f"{request.app.title} API",
        swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{root}/favicon.ico",
    )


@page.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_redoc_html(
        openapi_url=root + request.app.openapi_url,
        title=f"{request.app.title} API",
        redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
        redoc_favicon_url=f"{root}/favicon.ico",
        with_google_fonts=False,
    )


@page.get("/favicon.ico")
async def favicon() -> Response:
    return Response(icon(), media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"})


@functools.cache
def icon() -> bytes:
    """A white 7 on black, MNIST's colours, drawn once."""
    image = Image.new("L", (32, 32))
    ImageDraw.Draw(image).line([(8, 7), (24, 7), (14, 26)], fill=255, width=4, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="ICO", sizes=[(16, 16), (32, 32)])
    return buffer.getvalue()
