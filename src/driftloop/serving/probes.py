"""The unauthenticated probes of the server: liveness, readiness (all models, or one) and the
Prometheus metrics. The Open Inference Protocol's own health routes (``/v2/health/*``) are in
:mod:`driftloop.serving.oip` and answer from the same :func:`readiness`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from driftloop.serving.state import serving_state

if TYPE_CHECKING:
    from driftloop.serving.slots import ServedModel


def readiness(served: ServedModel) -> dict[str, Any]:
    """What the unauthenticated probes say of a model: loaded or not, and which version; why
    a model is not loaded (an error that may name storage paths) stays in the log and in
    ``GET /v1/models/{name}``, which needs a key."""
    status = served.status()
    return {"ready": status.ready, "version": status.version}


def probe_router() -> APIRouter:
    router = APIRouter(tags=["probes"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness: every served model is loaded",
        responses={503: {"description": "a model is not loaded"}},
    )
    async def readyz(request: Request) -> Response:
        manager = serving_state(request).manager
        models = {name: readiness(served) for name, served in manager.models.items()}
        ready = manager.ready
        return JSONResponse({"ready": ready, "models": models}, status_code=200 if ready else 503)

    @router.get(
        "/readyz/{name}",
        summary="Readiness of one model: it is loaded",
        responses={
            503: {"description": "the model is not loaded"},
            404: {"description": "no such model"},
        },
    )
    async def readyz_model(name: str, request: Request) -> Response:
        served = serving_state(request).manager.get(name)
        body = {"model": name, **readiness(served)}
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        state = serving_state(request)
        if state.insights is not None:
            state.metrics.set_insights(state.insights.stats)
        # collectors may read the store: off the event loop
        exposition = await anyio.to_thread.run_sync(state.metrics.exposition)
        return Response(exposition, media_type=CONTENT_TYPE_LATEST)

    return router
