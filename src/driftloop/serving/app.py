"""The serving app: ``create_app(config)`` builds a FastAPI app with everything injected.

Endpoints (``predict`` scope unless noted; ``admin`` implies ``predict``)::

    POST /v1/models/{name}/predict    {"texts": [...]} or {"text": "..."}
    POST /v1/models/{name}/feedback   label (predict implies it): {"feedback": [{"prediction_id":
                                      "...", "label": "...", "text": "..." (optional)}]}
    GET  /v1/models                   what is served
    GET  /v1/models/{name}
    POST /v1/models/{name}/deploy     admin: {"version": N}
    POST /v1/models/{name}/rollback   admin
    POST /v1/models/{name}/reload     admin
    GET  /healthz  /readyz  /metrics  /docs   (no key; :mod:`driftloop.serving.probes`)
    /v2/...                           the Open Inference Protocol (:mod:`driftloop.serving.oip`)

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
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from numpy.typing import NDArray
from prometheus_client import multiprocess as prometheus_multiprocess

from driftloop._version import __version__
from driftloop.config import Config
from driftloop.database import open_database
from driftloop.drift.estimated_accuracy import ESTIMATED_ACCURACY_METRIC
from driftloop.errors import ConflictError
from driftloop.insights.client import (
    InsightsClient,
    configure_insights,
    default_insights_client,
    shutdown_insights,
)
from driftloop.metrics.points import (
    SERVED_TAG,
    SHADOW_AGREEMENT,
    SHADOW_CONFIDENCE_GAP,
    SHADOW_CORRECT_GAP,
    SHADOW_TAG,
)
from driftloop.predictors import InputSchema
from driftloop.serving.auth import AdminKey, LabelKey, PredictKey, document_api_key_header
from driftloop.serving.auth import require_scope as require_scope  # its old import path
from driftloop.serving.error_insights import PredictErrorReporter
from driftloop.serving.errors import ERROR_RESPONSES, install_error_handlers
from driftloop.serving.feedback import FeedbackStore, check_feedback, match_feedback
from driftloop.serving.insights_api import insights_router
from driftloop.serving.keys import ApiKeyInfo, ApiKeyStore, Scope
from driftloop.serving.limits import UPLOAD_LIMIT, UPLOAD_PATH, BodyLimitMiddleware
from driftloop.serving.logged_predictions import logged_predictions_router
from driftloop.serving.model_io import (
    PREDICTED_CLASS,
    document_models,
    input_signals,
    item_digest,
    parse_inputs,
    predict_checked,
    regression_body,
    sampled_features,
    score,
    score_regression_shadow,
)
from driftloop.serving.oip import oip_router
from driftloop.serving.prediction_log import PredictionLog, new_prediction_ids, text_digest
from driftloop.serving.probes import probe_router
from driftloop.serving.prometheus import PrometheusMiddleware, ServingMetrics, multiprocess_mode
from driftloop.serving.ratelimit import KeyRateLimiter
from driftloop.serving.schemas import (
    DeployRequest,
    FeedbackRequest,
    FeedbackResponse,
    ModelListResponse,
    ModelStatusResponse,
    PredictRequest,
    PredictResponse,
    parse_body,
    read_json_body,
    request_body_schema,
)
from driftloop.serving.shedding import LoadSheddingMiddleware, LoopLagMonitor
from driftloop.serving.slots import ModelSlot, ModelSlotManager, ServedModel
from driftloop.serving.sources import ModelSource, RegistryModelSource

logger = logging.getLogger(__name__)

VERSION_HEADER = "X-Driftloop-Model-Version"
SERVER_TIMING_HEADER = "Server-Timing"
"""W3C Server-Timing on every prediction: ``model`` (the predictor call that scored the texts,
the batch's when they shared one) and ``total`` (the handler, body parsing to JSON encoding), in
milliseconds; a client's latency minus ``model`` is what serving costs it."""
HASH_HEADER = "X-Driftloop-Model-Hash"
GAUGE_REFRESH_SECONDS = 1.0


@dataclass
class ServingState:
    """Everything the endpoints use, built by :func:`create_app` and kept on ``app.state``."""

    config: Config
    manager: ModelSlotManager
    api_keys: ApiKeyStore
    feedback: FeedbackStore
    predictions: PredictionLog
    """Every answered prediction, in the store: what feedback labels are matched with."""
    metrics: ServingMetrics
    insights: InsightsClient | None = None
    owns_insights: bool = False
    shadow_tasks: set[asyncio.Task[None]] = field(default_factory=set)
    """Background shadow scorings still running (cancelled at shutdown)."""


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
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=config.serving.max_body_bytes,
        streamed=[(UPLOAD_PATH, config.serving.max_upload_bytes, UPLOAD_LIMIT)],
    )
    app.add_middleware(
        LoadSheddingMiddleware, max_delay=config.serving.max_queue_delay, monitor=lag
    )
    app.add_middleware(
        PrometheusMiddleware,
        metrics=state.metrics,  # outermost: counts 413s
        observers=[
            PredictErrorReporter(lambda: state.insights, lambda name: name in state.manager.models)
        ],
    )
    install_error_handlers(app)
    app.include_router(_model_router())
    app.include_router(_feedback_router())
    app.include_router(_model_status_router())
    app.include_router(probe_router())
    app.include_router(oip_router())
    app.include_router(insights_router(require_scope(Scope.INSIGHTS), ERROR_RESPONSES))
    app.include_router(
        logged_predictions_router(require_scope(Scope.INSIGHTS), _report, ERROR_RESPONSES)
    )
    for router in extra_routers:
        app.include_router(router)
    return app


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


def _state(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


# --- endpoints ---------------------------------------------------------------------------


def _model_router() -> APIRouter:
    """Predictions."""
    router = APIRouter(prefix="/v1/models", responses=ERROR_RESPONSES)

    @router.post(
        "/{name}/predict",
        response_model=PredictResponse,
        tags=["predict"],
        openapi_extra=request_body_schema(PredictRequest),
        summary="Classify texts with the production version",
    )
    async def predict(name: str, request: Request, key: PredictKey) -> Response:
        started = time.perf_counter()
        state = _state(request)
        settings = state.config.serving
        data = await read_json_body(request, settings.max_body_bytes)
        answer = await answer_request(
            state, name, lambda inputs: parse_inputs(inputs, data, settings), started
        )
        response = JSONResponse(
            answer.body,
            headers={
                VERSION_HEADER: str(answer.slot.version),
                HASH_HEADER: answer.slot.content_hash,
            },
        )
        total_ms = (time.perf_counter() - started) * 1000.0
        response.headers[SERVER_TIMING_HEADER] = (
            f"model;dur={answer.model_seconds * 1000.0:.3f}, total;dur={total_ms:.3f}"
        )
        return response

    return router


@dataclass(frozen=True)
class Answer:
    """A request's predictions: the response body, the version that answered, its model time."""

    body: dict[str, Any]
    slot: ModelSlot
    model_seconds: float


async def answer_request(
    state: ServingState, name: str, parse: Callable[[InputSchema], list[Any]], started: float
) -> Answer:
    """Predict with model ``name`` (``parse`` reads the request's inputs against a version's
    schema): the canary or production answers through the batcher, reports insights and
    remembers the predictions, and the shadow may score the same inputs. The /v1 and the
    Open Inference Protocol (/v2) endpoints both answer with it."""
    served = state.manager.get(name)
    inputs = served.inputs
    items = parse(inputs)  # texts, or a record model's records
    slot = state.manager.choose(served)
    if slot.predictor.inputs != inputs:  # a canary, or a swap meanwhile, takes others
        items = parse(slot.predictor.inputs)
    shadow = served.shadow
    probabilities, model_seconds = await score(
        served.batcher, slot.predictor, items, name=name, version=slot.version
    )
    latency_ms = (time.perf_counter() - started) * 1000.0
    body = _predictions(state, name, slot, items, probabilities, latency_ms)
    if (
        shadow is not None
        and shadow.version != slot.version
        and shadow.predictor.inputs == slot.predictor.inputs
        and state.manager.rng.random() < state.config.pipeline.shadow_fraction
    ):
        _start_shadow(state, name, shadow, slot.version, items, body["predictions"])
    return Answer(body, slot, model_seconds)


def _feedback_router() -> APIRouter:
    """True labels for earlier predictions."""
    router = APIRouter(prefix="/v1/models", responses=ERROR_RESPONSES)

    @router.post(
        "/{name}/feedback",
        response_model=FeedbackResponse,
        tags=["predict"],
        openapi_extra=request_body_schema(FeedbackRequest),
        summary="Send true labels for earlier predictions",
    )
    async def send_feedback(name: str, request: Request, key: LabelKey) -> FeedbackResponse:
        state = _state(request)
        served = state.manager.get(name)
        data = await read_json_body(request, state.config.serving.max_body_bytes)
        items = parse_body(FeedbackRequest, data).feedback
        check_feedback(items, _feedback_classes(state, served), state.config.serving)
        known = await state.predictions.find_labelled(name, [i.prediction_id for i in items])
        records = match_feedback(
            items, known, model=name, key_id=key.key_id, received_at=time.time()
        )
        stored = await anyio.to_thread.run_sync(state.feedback.record, records)
        for record in stored.first:  # a relabel corrects the row, not the reported insight
            if record.correct is None:
                continue
            _report(
                state,
                {"prediction_correct": 1.0 if record.correct else 0.0},
                {
                    "model": name,
                    "version": str(record.version),
                    "class": str(record.predicted_class),
                    "label": record.label,
                },
            )
            gap = record.shadow_correct_gap
            if gap is not None:
                _report(
                    state,
                    {SHADOW_CORRECT_GAP: gap},
                    _pair_tags(name, record.shadow_version, record.version),
                )
        return FeedbackResponse(
            accepted=len(items),
            relabelled=stored.relabelled,
            matched=sum(1 for record in records if record.predicted_class is not None),
        )

    return router


def _model_status_router() -> APIRouter:
    """What is served, and the admin's hot swaps."""
    router = APIRouter(prefix="/v1/models", responses=ERROR_RESPONSES)

    @router.get(
        "", response_model=ModelListResponse, tags=["models"], summary="Describe every served model"
    )
    async def list_models(request: Request, key: PredictKey) -> ModelListResponse:
        manager = _state(request).manager
        return ModelListResponse(
            models=[
                ModelStatusResponse(**served.status().to_dict())
                for served in manager.models.values()
            ]
        )

    @router.get(
        "/{name}",
        response_model=ModelStatusResponse,
        tags=["models"],
        summary="Describe one served model",
    )
    async def describe_model(name: str, request: Request, key: PredictKey) -> ModelStatusResponse:
        return _status(_state(request).manager.get(name))

    @router.post(
        "/{name}/deploy",
        response_model=ModelStatusResponse,
        tags=["admin"],
        openapi_extra=request_body_schema(DeployRequest),
        summary="Point production at a version and serve it (hot swap)",
    )
    async def deploy(name: str, request: Request, key: AdminKey) -> ModelStatusResponse:
        state = _state(request)
        served = state.manager.get(name)
        data = await read_json_body(request, state.config.serving.max_body_bytes)
        version = parse_body(DeployRequest, data).version
        await state.manager.deploy(name, version, actor=_actor(key))
        return _status(served)

    @router.post(
        "/{name}/rollback",
        response_model=ModelStatusResponse,
        tags=["admin"],
        summary="Move production back to its previous version",
    )
    async def rollback(name: str, request: Request, key: AdminKey) -> ModelStatusResponse:
        state = _state(request)
        served = state.manager.get(name)
        await state.manager.rollback(name, actor=_actor(key))
        return _status(served)

    @router.post(
        "/{name}/reload",
        response_model=ModelStatusResponse,
        tags=["admin"],
        summary="Load the production version again from the registry",
    )
    async def reload(name: str, request: Request, key: AdminKey) -> ModelStatusResponse:
        state = _state(request)
        served = state.manager.get(name)
        await state.manager.sync(name, force=True)
        return _status(served)

    return router


def _feedback_classes(state: ServingState, served: ServedModel) -> set[str]:
    """The labels feedback may carry for a model: ``models.<name>.labels`` when configured,
    else the classes of the versions it serves (production, and a canary or shadow)."""
    model_config = state.config.models.get(served.name)
    if model_config is not None and model_config.labels:
        return set(model_config.labels)
    classes = set(served.current().labels)
    for slot in (served.canary, served.shadow):
        if slot is not None:
            classes.update(slot.labels)
    return classes


def _predictions(
    state: ServingState,
    name: str,
    slot: ModelSlot,
    texts: list[Any],
    probabilities: NDArray[np.float64],
    latency_ms: float,
) -> dict[str, Any]:
    """The response body; reports each prediction's insights and remembers it for feedback."""
    if slot.predictor.output == "regression":
        return regression_body(state, name, slot, texts, probabilities, latency_ms)
    is_text = slot.predictor.inputs.is_text
    labels = slot.labels
    version = str(slot.version)
    now = time.time()
    remember = state.predictions.remember
    report = state.insights.report if state.insights is not None else None
    rows = probabilities.tolist()
    best = probabilities.argmax(axis=1).tolist()
    ids = new_prediction_ids(len(texts), now)
    observe = state.metrics.confidence.labels(name, version).observe
    inputs = input_signals(slot, texts) if report is not None else []
    schema, feature_rate = slot.predictor.inputs, state.config.serving.feature_insights_rate
    predictions: list[dict[str, Any]] = []
    for index, (prediction_id, text, row, top) in enumerate(
        zip(ids, texts, rows, best, strict=True)
    ):
        predicted, confidence = labels[top], row[top]
        predictions.append(
            {
                "id": prediction_id,
                "class": predicted,
                "confidence": confidence,
                "probabilities": dict(zip(labels, row, strict=True)),
            }
        )
        if report is not None:
            values = {"model_confidence": confidence, PREDICTED_CLASS: float(top)}
            if is_text:
                values["text_length"] = len(text)
            else:
                values.update(sampled_features(schema, text, feature_rate))
            values.update((signal, column[index]) for signal, column in inputs)
            if slot.accuracy_threshold is not None:
                values[ESTIMATED_ACCURACY_METRIC] = float(confidence > slot.accuracy_threshold)
            try:
                report(
                    values, {"model": name, "version": version, "class": predicted}, timestamp=now
                )
            except ConflictError:  # the client closed during shutdown: the answer still goes out
                logger.debug("insights client closed; not reporting this request")
                report = None
        remember(
            prediction_id,
            name,
            slot.version,
            predicted,
            now,
            text_digest(text) if is_text else item_digest(text),
        )
        observe(confidence)
    if report is not None:  # one request, one latency: however many texts it carried
        _report(
            state, {"latency_ms": latency_ms}, {"model": name, "version": version}, timestamp=now
        )
    state.metrics.predictions.labels(name, version).inc(len(texts))
    return {"model": name, "version": slot.version, "predictions": predictions}


def _start_shadow(
    state: ServingState,
    name: str,
    shadow: ModelSlot,
    served_version: int,
    texts: list[Any],
    served: list[dict[str, Any]],
) -> None:
    """Score ``texts`` with the shadow version in the background; the response is not held.
    ``served`` are the response's predictions of the same texts, which the shadow's are
    paired with."""
    task = asyncio.get_running_loop().create_task(
        _score_shadow(state, name, shadow, served_version, texts, served)
    )
    state.shadow_tasks.add(task)
    task.add_done_callback(state.shadow_tasks.discard)


async def _score_shadow(
    state: ServingState,
    name: str,
    shadow: ModelSlot,
    served_version: int,
    texts: list[Any],
    served: list[dict[str, Any]],
) -> None:
    if shadow.predictor.output == "regression":
        await score_regression_shadow(state, name, shadow, texts)
        return
    started = time.perf_counter()
    try:
        rows = (await anyio.to_thread.run_sync(predict_checked, shadow.predictor, texts)).tolist()
    except Exception:  # a failing shadow must never touch the served traffic
        logger.warning(
            "shadow %s v%d failed to score %d texts",
            name,
            shadow.version,
            len(texts),
            exc_info=True,
        )
        return
    latency_ms = (time.perf_counter() - started) * 1000.0
    labels = shadow.labels
    now = time.time()
    version = str(shadow.version)
    pair_tags = _pair_tags(name, shadow.version, served_version)
    for text, row, answer in zip(texts, rows, served, strict=True):
        best = max(range(len(row)), key=row.__getitem__)
        values = {"model_confidence": row[best]}
        if isinstance(text, str):
            values["text_length"] = len(text)
        if shadow.accuracy_threshold is not None:
            values[ESTIMATED_ACCURACY_METRIC] = float(row[best] > shadow.accuracy_threshold)
        _report(
            state,
            values,
            {"model": name, "version": version, "class": labels[best], SHADOW_TAG: "true"},
            timestamp=now,
        )
        _report(
            state,
            {
                SHADOW_AGREEMENT: 1.0 if labels[best] == answer["class"] else 0.0,
                SHADOW_CONFIDENCE_GAP: row[best] - answer["confidence"],
            },
            pair_tags,
            timestamp=now,
        )
        state.predictions.add_shadow(answer["id"], name, shadow.version, labels[best])
    _report(
        state,
        {"latency_ms": latency_ms},
        {"model": name, "version": version, SHADOW_TAG: "true"},
        timestamp=now,
    )


def _pair_tags(name: str, shadow_version: int | None, served_version: int | None) -> dict[str, str]:
    """The tags of a shadow pair metric: the shadow's version, and the version it was paired
    with."""
    return {
        "model": name,
        "version": str(shadow_version),
        SHADOW_TAG: "true",
        SERVED_TAG: str(served_version),
    }


def _report(
    state: ServingState,
    values: dict[str, float],
    tags: dict[str, str],
    timestamp: float | None = None,
) -> None:
    insights = state.insights
    if insights is None:
        return
    try:
        insights.report(values, tags, timestamp=timestamp)
    except ConflictError:  # the client closed during shutdown: the answer still goes out
        logger.debug("insights client closed; not reporting %s", sorted(values))


def _status(served: ServedModel) -> ModelStatusResponse:
    return ModelStatusResponse(**served.status().to_dict())


def _actor(key: ApiKeyInfo) -> str:
    return f"api-key:{key.key_id}:{key.name}"


async def _refresh_gauges(state: ServingState) -> None:
    """Keep the insights gauges current in every worker (multiprocess mode merges them)."""
    while True:
        if state.insights is not None:
            state.metrics.set_insights(state.insights.stats)
        await anyio.sleep(GAUGE_REFRESH_SECONDS)
