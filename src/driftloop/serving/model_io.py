"""A served model's own inputs and outputs over HTTP: request validation against the model's
:class:`~driftloop.predictors.InputSchema`, the predictor call, the answers of a regression
model, and each model's request schema in the OpenAPI document.

A text model takes ``{"texts": [...]}`` or ``{"text": "..."}`` (unchanged); a record model
takes ``{"records": [{...}, ...]}`` or ``{"record": {...}}``, every record checked against the
schema of the version that answers: a wrong type, a missing required feature or an unknown one
is a 422 naming the item and the field (``records.3.tenure: Input should be a valid number``).
Records count against ``serving.max_texts_per_request``, and their strings against
``serving.max_text_chars``.

The predictor's own code runs in the batcher's worker thread; an exception it raises becomes a
:class:`~driftloop.predictors.PredictionError` (500) naming the model and the version, with the
traceback in the log; a :class:`~driftloop.errors.DriftloopError` it raises on purpose (say an
``InvalidInputError`` for an input it cannot score) keeps its own status.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio
import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, create_model

from driftloop.config import ServingConfig
from driftloop.errors import ConflictError, DriftloopError, InvalidInputError
from driftloop.metrics.points import SHADOW_TAG
from driftloop.predictors import (
    PREDICTION,
    Feature,
    InputSchema,
    PredictionError,
    Predictor,
    TextClassifier,
)
from driftloop.predictors.loading import WrongAnswerError, check_answer
from driftloop.predictors.schema import feature_metrics
from driftloop.serving.batching import MicroBatcher, Scored, batched_signals
from driftloop.serving.prediction_log import new_prediction_ids, text_digest
from driftloop.serving.schemas import (
    LimitError,
    PredictRequest,
    StrictBody,
    check_texts,
    parse_body,
    request_body_schema,
)

if TYPE_CHECKING:
    from driftloop.serving.slots import ModelSlot
    from driftloop.serving.state import ServingState

logger = logging.getLogger(__name__)


# --- requests ------------------------------------------------------------------------------


def parse_inputs(inputs: InputSchema, data: Any, settings: ServingConfig) -> list[Any]:
    """The request's inputs, checked against ``inputs``: texts, or records as ``dict``s
    (every feature present, ``None`` for a missing optional one)."""
    if inputs.is_text:
        texts = parse_body(PredictRequest, data).all_texts()
        check_texts(texts, settings)
        return texts
    body = parse_body(record_request_model(inputs, settings.max_text_chars), data)
    many: list[BaseModel] | None = getattr(body, "records", None)
    one: BaseModel | None = getattr(body, "record", None)
    if (many is None) == (one is None):
        raise InvalidInputError("send exactly one of 'records' (a list) or 'record' (an object)")
    records = many if many is not None else [one]
    if not records:
        raise InvalidInputError("'records' is empty: send at least one record")
    if len(records) > settings.max_texts_per_request:
        raise LimitError(
            f"{len(records)} records in one request exceed serving.max_texts_per_request "
            f"({settings.max_texts_per_request})",
            "serving.max_texts_per_request",
        )
    return [record.model_dump(by_alias=True) for record in records if record is not None]


@functools.lru_cache(maxsize=64)
def record_request_model(inputs: InputSchema, max_chars: int) -> type[BaseModel]:
    """The request body of a record model: ``records`` or ``record``, validated strictly
    (no coercion, no unknown field, numbers finite)."""
    fields: dict[str, Any] = {}
    for index, feature in enumerate(inputs.features):
        annotation = _annotation(feature, max_chars)
        if feature.optional:
            fields[f"f{index}"] = (annotation | None, Field(None, alias=feature.name))
        else:
            fields[f"f{index}"] = (annotation, Field(alias=feature.name))
    record = create_model(
        "Record", __config__=ConfigDict(extra="forbid", frozen=True, strict=True), **fields
    )
    request: type[BaseModel] = create_model(
        "RecordsPredictRequest",
        __base__=StrictBody,
        records=(list[record] | None, Field(None, description="records to predict")),
        record=(record | None, Field(None, description="one record to predict")),
    )
    return request


def _annotation(feature: Feature, max_chars: int) -> Any:
    if feature.type == "number":
        return Annotated[float, Field(allow_inf_nan=False)]
    if feature.type == "integer":
        return StrictInt
    if feature.type == "boolean":
        return StrictBool
    if feature.type == "category":
        return Literal[feature.categories]
    return Annotated[str, Field(max_length=max_chars)]


PREDICTED_CLASS = "predicted_class"
"""The insight of a classification's class: its index among the version's labels (what the
class-mix chi-square detector counts)."""


def sampled_features(inputs: InputSchema, item: Any, rate: float) -> dict[str, float]:
    """A record's ``feature.<name>`` insights with probability ``rate``
    (``serving.feature_insights_rate``), else none; a text has none."""
    if inputs.is_text or rate <= 0.0 or (rate < 1.0 and random.random() >= rate):
        return {}
    return feature_metrics(inputs, item)


def item_digest(item: Any) -> str:
    """What the prediction log keeps of an input: a text's digest, or that of a record's
    canonical JSON."""
    if isinstance(item, str):
        return text_digest(item)
    return text_digest(json.dumps(item, sort_keys=True, separators=(",", ":")))


# --- scoring -------------------------------------------------------------------------------


async def score(
    batcher: MicroBatcher, predictor: Predictor, items: Sequence[Any], *, name: str, version: int
) -> Scored:
    """``predictor.predict(items)`` through the model's batcher; a failure of the model's own
    code, or an answer that does not fit its declared output, is a :class:`PredictionError`
    naming ``name`` and ``version``."""
    try:
        return await batcher.predict_timed(predictor, items)
    except WrongAnswerError as exc:
        raise _failed(name, version, exc) from exc
    except DriftloopError:
        raise
    except Exception as exc:
        raise _failed(name, version, exc) from exc


def _failed(name: str, version: int, exc: Exception) -> PredictionError:
    logger.error("model %s v%d failed to predict", name, version, exc_info=exc)
    detail = exc.message if isinstance(exc, DriftloopError) else type(exc).__name__
    return PredictionError(
        f"model {name!r} v{version} failed to predict ({detail}); the "
        "traceback is in the server log"
    )


# --- answers of a regression model ---------------------------------------------------------


def regression_body(
    state: ServingState,
    name: str,
    slot: ModelSlot,
    items: Sequence[Any],
    outputs: NDArray[np.float64],
    latency_ms: float,
) -> dict[str, Any]:
    """The response body of a regression model: one ``{"id", "value"[, "interval"]}`` per
    input. Reports ``prediction`` and the predictor's input signals per input, the request's
    ``latency_ms``, and remembers each prediction (its value as the predicted class)."""
    version = str(slot.version)
    now = time.time()
    tags = {"model": name, "version": version}
    values = (outputs if outputs.ndim == 1 else outputs[:, 0]).tolist()
    intervals = outputs[:, 1:3].tolist() if outputs.ndim == 2 else None
    ids = new_prediction_ids(len(items), now)
    rate = state.config.serving.feature_insights_rate
    points: list[dict[str, float]] = [
        {PREDICTION: value, **sampled_features(slot.predictor.inputs, item, rate)}
        for value, item in zip(values, items, strict=True)
    ]
    for signal, column in input_signals(slot, items):
        for point, signal_value in zip(points, column, strict=True):
            point[signal] = signal_value
    predictions: list[dict[str, Any]] = []
    for index, (prediction_id, value) in enumerate(zip(ids, values, strict=True)):
        answer: dict[str, Any] = {"id": prediction_id, "value": value}
        if intervals is not None:
            answer["interval"] = intervals[index]
        predictions.append(answer)
        state.predictions.remember(
            prediction_id, name, slot.version, format(value, ".6g"), now, item_digest(items[index])
        )
    report_points(state, [*points, {"latency_ms": latency_ms}], tags, now)
    state.metrics.predictions.labels(name, version).inc(len(items))
    return {"model": name, "version": slot.version, "predictions": predictions}


async def score_regression_shadow(
    state: ServingState, name: str, shadow: ModelSlot, items: Sequence[Any]
) -> None:
    """A regression shadow: its ``prediction`` per input and its latency, tagged
    ``shadow=true`` (it never touches the served answer)."""
    started = time.perf_counter()
    try:
        outputs = await anyio.to_thread.run_sync(predict_checked, shadow.predictor, items)
    except Exception:  # a failing shadow must never touch the served traffic
        logger.warning(
            "shadow %s v%d failed to score %d inputs",
            name,
            shadow.version,
            len(items),
            exc_info=True,
        )
        return
    latency_ms = (time.perf_counter() - started) * 1000.0
    values = (outputs if outputs.ndim == 1 else outputs[:, 0]).tolist()
    tags = {"model": name, "version": str(shadow.version), SHADOW_TAG: "true"}
    report_points(
        state,
        [*({PREDICTION: value} for value in values), {"latency_ms": latency_ms}],
        tags,
        time.time(),
    )


def predict_checked(predictor: Predictor, items: Sequence[Any]) -> NDArray[np.float64]:
    """``predictor.predict(items)``, checked against its declared output unless it is one of
    driftloop's own (:class:`WrongAnswerError`): what a shadow, outside the batcher, scores
    with."""
    answer = predictor.predict(items)
    if isinstance(predictor, TextClassifier):
        return answer
    outputs = np.asarray(answer, dtype=np.float64)
    check_answer(predictor, outputs, len(items), "it", WrongAnswerError)
    return outputs


def input_signals(slot: ModelSlot, items: Sequence[Any]) -> list[tuple[str, list[float]]]:
    """The predictor's per-input signals (those its batch computed with the predictions, when
    ``items`` were just scored through the batcher); none if they fail, which must never fail
    the answer."""
    batched = batched_signals(slot.predictor, items)
    if batched is not None:
        return [(signal, values.tolist()) for signal, values in batched.items()]
    try:
        return [
            (signal, np.asarray(values, dtype=np.float64).tolist())
            for signal, values in slot.predictor.input_signals(items).items()
        ]
    except Exception:
        logger.warning("input signals of %s v%d failed", slot.name, slot.version, exc_info=True)
        return []


def report_points(
    state: ServingState, points: Sequence[dict[str, float]], tags: dict[str, str], timestamp: float
) -> None:
    insights = state.insights
    if insights is None:
        return
    try:
        for point in points:
            insights.report(point, tags, timestamp=timestamp)
    except ConflictError:  # the client closed during shutdown: the answer still goes out
        logger.debug("insights client closed; not reporting this request")


# --- the OpenAPI document ------------------------------------------------------------------

PREDICT_PATH = "/v1/models/{name}/predict"


def document_models(
    document: dict[str, Any], served: dict[str, Predictor | None], settings: ServingConfig
) -> dict[str, Any]:
    """A copy of ``document`` with one ``/v1/models/<model>/predict`` path per loaded model,
    whose request body is that model's own schema (and whose description names its output)."""
    generic = document.get("paths", {}).get(PREDICT_PATH, {}).get("post")
    if generic is None:
        return document
    document = copy.deepcopy(document)
    for model, predictor in sorted(served.items()):
        if predictor is None:
            continue
        operation = copy.deepcopy(generic)
        operation["parameters"] = [
            p for p in operation.get("parameters", []) if p.get("name") != "name"
        ]
        operation["operationId"] = f"predict_{model}"
        operation["summary"] = f"Predict with {model}"
        operation["description"] = _describe(model, predictor)
        operation.update(request_body_schema(_request_model(predictor, settings)))
        document["paths"][PREDICT_PATH.replace("{name}", model)] = {"post": operation}
    return document


def _request_model(predictor: Predictor, settings: ServingConfig) -> type[BaseModel]:
    if predictor.inputs.is_text:
        return PredictRequest
    return record_request_model(predictor.inputs, settings.max_text_chars)


def _describe(model: str, predictor: Predictor) -> str:
    inputs = (
        "texts"
        if predictor.inputs.is_text
        else "records of "
        + ", ".join(
            f"{f.name} ({f.type}{', optional' if f.optional else ''})"
            for f in predictor.inputs.features
        )
    )
    if predictor.output == "classification":
        output = "each prediction's class, confidence and probabilities over " + ", ".join(
            predictor.labels
        )
    else:
        output = "each prediction's value (and its interval, when the model gives one)"
    return f"{model} takes {inputs}; it answers {output}."
