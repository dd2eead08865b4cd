"""The serving app: ``create_app(config)`` builds a FastAPI app with everything injected.

Endpoints (``predict`` scope unless noted; ``admin`` implies ``predict``)::

    POST /v1/models/{name}/predict    {"texts": [...]} or {"text": "..."}  (predict_api)
    POST /v1/models/{name}/feedback   label (predict implies it): {"feedback": [{"prediction_id":
                                      "...", "label": "...", "text": "..." (optional)}]}
                                      (feedback_api)
    GET  /v1/models                   what is served  (models_api, as the four below)
    GET  /v1/models/{name}
    POST /v1/models/{name}/deploy     admin: {"version": N}
    POST /v1/models/{name}/rollback   admin
    POST /v1/models/{name}/reload     admin
    GET  /healthz  /readyz  /metrics  /docs   (no key; :mod:`driftloop.serving.probes`)
    /v2/...                           the Open Inference Protocol (:mod:`driftloop.serving.oip`)

Each group of routes is a router module of :mod:`driftloop.serving`; this module builds the
app around them: the :class:`~driftloop.serving.state.ServingState` they share, the middleware,
the error boundary and the lifespan that starts and stops the models and the prediction log.

While a rollout runs (the registry's ``canary`` or ``shadow`` alias), a request is answered
by the canary with probability ``pipeline.canary_fraction`` (the response and its insights name
the version that answered), or by production while the shadow scores the same texts in the
background (its insights tagged ``shadow=true``; it never delays or fails the response).

Every error is JSON ``{"error": {"type": ..., "message": ...}}`` with the status of its
:class:`~driftloop.errors.DriftloopError` (limit errors also name the ``serving.*`` key), on
every route, the mounted routers' too (:mod:`driftloop.serving.errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI
from prometheus_client import multiprocess as prometheus_multiprocess

from driftloop._version import __version__
from driftloop.config import Config
from driftloop.database import open_database
from driftloop.insights.client import (
    InsightsClient,
    configure_insights,
    default_insights_client,
    shutdown_insights,
)
from driftloop.serving.auth import document_api_key_header
from driftloop.serving.auth import require_scope as require_scope  # its old import path
from driftloop.serving.error_insights import PredictErrorReporter
from driftloop.serving.errors import ERROR_RESPONSES, install_error_handlers
from driftloop.serving.feedback import FeedbackStore
from driftloop.serving.feedback_api import feedback_router
from driftloop.serving.insights_api import insights_router
from driftloop.serving.keys import ApiKeyStore, Scope
from driftloop.serving.limits import UPLOAD_LIMIT, UPLOAD_PATH, BodyLimitMiddleware
from driftloop.serving.logged_predictions import logged_predictions_router
from driftloop.serving.model_io import document_models
from driftloop.serving.models_api import model_status_router
from driftloop.serving.oip import oip_router
from driftloop.serving.predict_api import HASH_HEADER as HASH_HEADER
from driftloop.serving.predict_api import SERVER_TIMING_HEADER as SERVER_TIMING_HEADER
from driftloop.serving.predict_api import VERSION_HEADER as VERSION_HEADER
from driftloop.serving.predict_api import Answer as Answer
from driftloop.serving.predict_api import answer_request as answer_request
from driftloop.serving.predict_api import predict_router
from driftloop.serving.prediction_log import PredictionLog
from driftloop.serving.probes import probe_router
from driftloop.serving.prometheus import PrometheusMiddleware, ServingMetrics, multiprocess_mode
from driftloop.serving.ratelimit import KeyRateLimiter
from driftloop.serving.shedding import LoadSheddingMiddleware, LoopLagMonitor
from driftloop.serving.slots import ModelSlotManager
from driftloop.serving.sources import ModelSource, RegistryModelSource
from driftloop.serving.state import ServingState as ServingState
from driftloop.serving.state import report_insight

GAUGE_REFRESH_SECONDS = 1.0


def create_app(
    config: Config,
    *,
    model_source: ModelSource | None = None,
    insights: InsightsClient | None = None,
    api_keys: ApiKeyStore | None = None,
    feedback: FeedbackStore | None = None,
    models: Sequence[str] | None = None,
    metrics: ServingMetrics | None = None,
    extra_routers: Sequence[APIRouter] = (),
    poll: bool = True,
    rng: random.Random | None = None,
) -> FastAPI:
    """The serving app for ``config``.

    ``model_source`` defaults to the model registry; ``insights`` to the process-wide client
    (configured from ``config`` when none is); ``models`` to the names under ``config.models``;
    ``api_keys`` and ``feedback`` to tables in ``config.store``. ``extra_routers`` are mounted
    as they are (the dashboard, the pipeline's webhooks). ``rng`` draws the canary routing
    (seed it for reproducible tests).
    """
    state = _serving_state(
        config,
        model_source=model_source,
        insights=insights,
        api_keys=api_keys,
        feedback=feedback,
        models=models,
        metrics=metrics,
        rng=rng,
    )
    lag = LoopLagMonitor()
    app = FastAPI(
        title="driftloop serving",
        version=__version__,
        description="Versioned text classifiers behind an authenticated JSON API; every "
        "prediction reports insights that the drift monitors watch.",
        lifespan=_lifespan(state, lag, poll=poll),
        redirect_slashes=False,  # a slash redirect would echo the request's Host header
    )
    app.state.serving = state
    app.state.rate_limiter = KeyRateLimiter(config.serving.rate_limits)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_api_key_header(FastAPI.openapi(app))
        loaded = {
            name: None if served.slot is None else served.slot.predictor
            for name, served in state.manager.models.items()
        }
        return document_models(app.openapi_schema, loaded, config.serving)

    app.openapi = openapi  # type: ignore[method-assign]
    _add_middleware(app, state, lag)
    install_error_handlers(app)
    for router in (*_serving_routers(), *extra_routers):
        app.include_router(router)
    return app


def _serving_routers() -> list[APIRouter]:
    """The routers every serving app mounts, in order (a new one is one line here)."""
    return [
        predict_router(),
        feedback_router(),
        model_status_router(),
        probe_router(),
        oip_router(),
        insights_router(require_scope(Scope.INSIGHTS), ERROR_RESPONSES),
        logged_predictions_router(require_scope(Scope.INSIGHTS), report_insight, ERROR_RESPONSES),
    ]


def _add_middleware(app: FastAPI, state: ServingState, lag: LoopLagMonitor) -> None:
    """The body limits, the load shedding and (outermost, so it counts 413s) the Prometheus
    middleware, which also reports failed predictions as insights."""
    settings = state.config.serving
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        streamed=[(UPLOAD_PATH, settings.max_upload_bytes, UPLOAD_LIMIT)],
    )
    app.add_middleware(LoadSheddingMiddleware, max_delay=settings.max_queue_delay, monitor=lag)
    app.add_middleware(
        PrometheusMiddleware,
        metrics=state.metrics,  # outermost: counts 413s
        observers=[
            PredictErrorReporter(lambda: state.insights, lambda name: name in state.manager.models)
        ],
    )


def _serving_state(
    config: Config,
    *,
    model_source: ModelSource | None,
    insights: InsightsClient | None,
    api_keys: ApiKeyStore | None,
    feedback: FeedbackStore | None,
    models: Sequence[str] | None,
    metrics: ServingMetrics | None,
    rng: random.Random | None,
) -> ServingState:
    """What :func:`create_app` was given, and the defaults of what it was not."""
    if api_keys is None or feedback is None:
        database = open_database(config.store, base_dir=config.base_dir)
        api_keys = api_keys if api_keys is not None else ApiKeyStore(database)
        feedback = feedback if feedback is not None else FeedbackStore(database)
    serving_metrics = metrics if metrics is not None else ServingMetrics()
    source = model_source if model_source is not None else RegistryModelSource.from_config(config)
    manager = ModelSlotManager(
        source,
        models if models is not None else list(config.models),
        config.serving,
        serving_metrics,
        canary_fraction=config.pipeline.canary_fraction,
        rng=rng,
    )
    return ServingState(
        config=config,
        manager=manager,
        api_keys=api_keys,
        feedback=feedback,
        predictions=PredictionLog(
            feedback.database, retention=config.serving.prediction_log_retention
        ),
        metrics=serving_metrics,
        insights=insights,
    )


def _lifespan(
    state: ServingState, lag: LoopLagMonitor, *, poll: bool
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start the models, the prediction log and the gauges with the app; stop them (and the
    shadow scorings still running) after it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.insights is None:
            state.insights = default_insights_client()
            if state.insights is None:
                state.insights = await anyio.to_thread.run_sync(configure_insights, state.config)
                state.owns_insights = True
        await state.manager.start(poll=poll)
        state.predictions.start()
        refresher = asyncio.get_running_loop().create_task(_refresh_gauges(state))
        try:
            yield
        finally:
            lag.stop()
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            for task in list(state.shadow_tasks):
                task.cancel()
            if state.shadow_tasks:
                await asyncio.gather(*state.shadow_tasks, return_exceptions=True)
            await anyio.to_thread.run_sync(state.predictions.close)
            await state.manager.stop()
            if state.owns_insights:
                await anyio.to_thread.run_sync(shutdown_insights)
            if multiprocess_mode():
                prometheus_multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    return lifespan


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` (each worker of ``driftloop serve --workers N``):
    the config comes from ``$DRIFTLOOP_CONFIG`` or ``driftloop.yaml`` found from here."""
    from driftloop.config import load_config
    from driftloop.logs import configure_from

    config = load_config()
    configure_from(config, None, None)
    return create_app(config)


async def _refresh_gauges(state: ServingState) -> None:
    """Keep the insights gauges current in every worker (multiprocess mode merges them)."""
    while True:
        if state.insights is not None:
            state.metrics.set_insights(state.insights.stats)
        await anyio.sleep(GAUGE_REFRESH_SECONDS)
