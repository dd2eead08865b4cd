"""Predictions: ``POST /v1/models/{name}/predict`` and :func:`answer_request`, which the /v1 and
the Open Inference Protocol (/v2, :mod:`driftloop.serving.oip`) endpoints both answer with.

The canary or production version answers through the model's batcher; each prediction's
insights are reported and the prediction is remembered for feedback
(:class:`~driftloop.serving.prediction_log.PredictionLog`); while a shadow rollout runs, the
shadow scores the same inputs in the background (its insights tagged ``shadow=true``, paired
with the answer's), never delaying or failing the response.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from numpy.typing import NDArray

from driftloop.drift.estimated_accuracy import ESTIMATED_ACCURACY_METRIC
from driftloop.errors import ConflictError
from driftloop.metrics.points import SHADOW_AGREEMENT, SHADOW_CONFIDENCE_GAP, SHADOW_TAG
from driftloop.predictors import InputSchema
from driftloop.serving.auth import PredictKey
from driftloop.serving.errors import ERROR_RESPONSES
from driftloop.serving.model_io import (
    PREDICTED_CLASS,
    input_signals,
    item_digest,
    parse_inputs,
    predict_checked,
    regression_body,
    sampled_features,
    score,
    score_regression_shadow,
)
from driftloop.serving.prediction_log import new_prediction_ids, text_digest
from driftloop.serving.schemas import (
    PredictRequest,
    PredictResponse,
    read_json_body,
    request_body_schema,
)
from driftloop.serving.slots import ModelSlot
from driftloop.serving.state import ServingState, pair_tags, report_insight, serving_state

logger = logging.getLogger(__name__)

VERSION_HEADER = "X-Driftloop-Model-Version"
SERVER_TIMING_HEADER = "Server-Timing"
"""W3C Server-Timing on every prediction: ``model`` (the predictor call that scored the texts,
the batch's when they shared one) and ``total`` (the handler, body parsing to JSON encoding), in
milliseconds; a client's latency minus ``model`` is what serving costs it."""
HASH_HEADER = "X-Driftloop-Model-Hash"


def predict_router() -> APIRouter:
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
        state = serving_state(request)
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
    signals = input_signals(slot, texts) if report is not None else []
    feature_rate = state.config.serving.feature_insights_rate
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
            values = _insight_values(slot, text, top, confidence, feature_rate)
            values.update((signal, column[index]) for signal, column in signals)
            if slot.accuracy_threshold is not None:
                values[ESTIMATED_ACCURACY_METRIC] = float(confidence > slot.accuracy_threshold)
            try:
                report(
                    values, {"model": name, "version": version, "class": predicted}, timestamp=now
                )
            except ConflictError:  # the client closed during shutdown: the answer still goes out
                logger.debug("insights client closed; not reporting this request")
                report = None
        digest = text_digest(text) if is_text else item_digest(text)
        remember(prediction_id, name, slot.version, predicted, now, digest)
        observe(confidence)
    if report is not None:  # one request, one latency: however many texts it carried
        report_insight(
            state, {"latency_ms": latency_ms}, {"model": name, "version": version}, timestamp=now
        )
    state.metrics.predictions.labels(name, version).inc(len(texts))
    return {"model": name, "version": slot.version, "predictions": predictions}


def _insight_values(
    slot: ModelSlot, item: Any, top: int, confidence: float, feature_rate: float
) -> dict[str, float]:
    """A classification's first insights: its confidence and class, and the text's length or
    a sampled record's features."""
    values = {"model_confidence": confidence, PREDICTED_CLASS: float(top)}
    if slot.predictor.inputs.is_text:
        values["text_length"] = len(item)
    else:
        values.update(sampled_features(slot.predictor.inputs, item, feature_rate))
    return values


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
    now = time.time()
    version = str(shadow.version)
    _report_shadow_pairs(state, name, shadow, served_version, texts, rows, served, now)
    report_insight(
        state,
        {"latency_ms": latency_ms},
        {"model": name, "version": version, SHADOW_TAG: "true"},
        timestamp=now,
    )


def _report_shadow_pairs(
    state: ServingState,
    name: str,
    shadow: ModelSlot,
    served_version: int,
    texts: Sequence[Any],
    rows: list[list[float]],
    served: list[dict[str, Any]],
    now: float,
) -> None:
    """Each shadow prediction's insights, its pairing with the served answer (agreement and
    confidence gap), and its class in the prediction log."""
    labels = shadow.labels
    version = str(shadow.version)
    tags = pair_tags(name, shadow.version, served_version)
    for text, row, answer in zip(texts, rows, served, strict=True):
        best = max(range(len(row)), key=row.__getitem__)
        values = {"model_confidence": row[best]}
        if isinstance(text, str):
            values["text_length"] = len(text)
        if shadow.accuracy_threshold is not None:
            values[ESTIMATED_ACCURACY_METRIC] = float(row[best] > shadow.accuracy_threshold)
        report_insight(
            state,
            values,
            {"model": name, "version": version, "class": labels[best], SHADOW_TAG: "true"},
            timestamp=now,
        )
        report_insight(
            state,
            {
                SHADOW_AGREEMENT: 1.0 if labels[best] == answer["class"] else 0.0,
                SHADOW_CONFIDENCE_GAP: row[best] - answer["confidence"],
            },
            tags,
            timestamp=now,
        )
        state.predictions.add_shadow(answer["id"], name, shadow.version, labels[best])
