"""``POST /v1/models/{name}/predictions``: predictions a model served elsewhere made, logged so
that feedback labels sent later join them.

A service that runs its own model (a Flask app, a batch job, SageMaker) sends, with a key of the
``insights`` scope (or ``admin``), what it predicted: each prediction's own id (chosen by the
client), its input (a text, or a record of features) when it has it, its output (a ``class``
with ``confidence`` and/or ``probabilities``, or a regression ``value``) and the version of its
model. They go into the same prediction log as the predictions this server answers
(:class:`~driftloop.serving.prediction_log.PredictionLog`), written before the answer (one
``INSERT``; ``200`` means they are in the store, so a label sent next reaches them from any
worker or replica), and feedback sent to ``POST /v1/models/{name}/feedback`` with the same id
joins them: ``prediction_correct`` and realized accuracy as for a served prediction.

Client ids live in their own namespace: the log keeps each under
:func:`~driftloop.serving.prediction_log.external_log_id` (a digest of the model and the id),
and an id shaped like the ids this server issues (32 lowercase hex digits) is refused, so a
logged prediction can never take or shadow a served one. An id logged again for the same model
is kept as first logged (a retry is harmless) and counted in ``duplicates``.

The body is read and validated like predict's: ``serving.max_body_bytes``, at most
``serving.max_texts_per_request`` predictions (413), texts within ``serving.max_text_chars``,
records checked against the schema of the version this server holds for the model (when it
holds one), classes among the model's known classes (``models.<name>.labels`` or the loaded
version's), a 422 naming the bad item otherwise, and nothing of a refused request is kept.
Each logged prediction reports its insights as a served one does (``model_confidence``, the
regression ``prediction``, per-feature values), tagged with the model, version and class.
"""

from __future__ import annotations

import math
import random
import re
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

from driftloop.config import ServingConfig
from driftloop.errors import InvalidInputError
from driftloop.predictors.schema import FEATURE_METRIC_PREFIX, FEATURE_NAME, InputSchema
from driftloop.serving.keys import ApiKeyInfo
from driftloop.serving.model_io import PREDICTED_CLASS, item_digest, parse_inputs, sampled_features
from driftloop.serving.prediction_log import LoggedEntry, external_log_id
from driftloop.serving.schemas import (
    LimitError,
    StrictBody,
    parse_body,
    read_json_body,
    request_body_schema,
)

MAX_ID_CHARS = 64
"""A client id's length: what the feedback table keeps of a prediction id."""
MAX_FEATURES = 512
FUTURE_TOLERANCE_SECONDS = 300.0
SERVED_ID = re.compile(r"^[0-9a-f]{32}$")
"""The shape of the ids this server issues: refused as client ids."""
PROBABILITY_TOLERANCE = 1e-3

FeatureValue = StrictStr | StrictBool | StrictInt | StrictFloat | None


class LoggedPrediction(StrictBody):
    """One prediction made elsewhere."""

    id: StrictStr = Field(
        min_length=1,
        max_length=MAX_ID_CHARS,
        description="the client's id for it; feedback names it",
    )
    input: StrictStr | dict[str, FeatureValue] | None = Field(
        None, description="the text, or the record of features, it scored"
    )
    class_: StrictStr | None = Field(
        None,
        alias="class",
        min_length=1,
        max_length=256,
        description="the predicted class (classification)",
    )
    confidence: StrictFloat | StrictInt | None = Field(None, ge=0.0, le=1.0)
    probabilities: dict[str, StrictFloat | StrictInt] | None = Field(
        None, description="class -> probability (classification)"
    )
    value: StrictFloat | StrictInt | None = Field(None, description="the value (regression)")
    timestamp: AwareDatetime | StrictFloat | StrictInt | None = Field(
        None, description="when it was predicted: ISO 8601 or unix seconds; default: now"
    )

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if any(ord(char) < 32 or ord(char) == 127 for char in value):
            raise ValueError("must not contain control characters")
        if SERVED_ID.match(value):
            raise ValueError(
                "32 lowercase hex digits is the shape of the ids this server "
                "issues; give a logged prediction an id of another shape "
                "(e.g. prefix it)"
            )
        return value

    @field_validator("input")
    @classmethod
    def _input(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain a NUL character")
        if isinstance(value, dict):
            if len(value) > MAX_FEATURES:
                raise ValueError(f"at most {MAX_FEATURES} features, got {len(value)}")
            for name, feature in value.items():
                if not FEATURE_NAME.match(name):
                    raise ValueError(
                        f"feature name {name!r} must be a letter or _ then "
                        "letters, digits, _ . - (at most 64 characters)"
                    )
                if isinstance(feature, float) and not math.isfinite(feature):
                    raise ValueError(f"feature {name!r} must be a finite number")
        return value

    @field_validator("value")
    @classmethod
    def _value(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class LogPredictionsRequest(StrictBody):
    """``{"version": 7, "predictions": [{"id", "input"?, "class"?, ...}, ...]}``."""

    version: StrictInt = Field(
        ge=0, le=2**31 - 1, description="the version of the model that made them"
    )
    predictions: list[LoggedPrediction] = Field(min_length=1)


class LogPredictionsResponse(BaseModel):
    accepted: int = Field(description="predictions logged now")
    duplicates: int = Field(description="ids logged before for this model (kept as they were)")


@dataclass(frozen=True)
class ModelFacts:
    """What the server knows of the model the predictions belong to."""

    classes: Collection[str] | None
    """Its classes, or None when unknown (no labels configured, no version loaded here)."""
    inputs: InputSchema | None
    """The input schema of the version loaded here, if any."""
    output: str | None
    """``classification`` or ``regression``, when a version is loaded here."""
    labels: tuple[str, ...] = ()
    """The loaded production version's classes, in its order (``predicted_class`` indexes
    them)."""


def model_facts(state: Any, name: str) -> ModelFacts:
    """What the serving ``state`` knows of model ``name``: a model under ``models:`` (404
    otherwise), whether or not a version of it is loaded here."""
    served = state.manager.get(name)
    slot = served.slot
    model_config = state.config.models.get(name)
    classes: set[str] | None = None
    if model_config is not None and model_config.labels:
        classes = set(model_config.labels)
    elif slot is not None:
        classes = set(slot.labels)
        for other in (served.canary, served.shadow):
            if other is not None:
                classes.update(other.labels)
    if slot is None:
        return ModelFacts(classes, None, None)
    return ModelFacts(classes, slot.predictor.inputs, slot.predictor.output, tuple(slot.labels))


@dataclass(frozen=True)
class CheckedPrediction:
    client_id: str
    input: str | dict[str, Any] | None
    predicted: str
    """The class, or the regression value formatted as the served log keeps it."""
    confidence: float | None
    value: float | None
    timestamp: float


def check_logged(
    request: LogPredictionsRequest,
    facts: ModelFacts,
    settings: ServingConfig,
    *,
    received: float,
    retention: float,
) -> list[CheckedPrediction]:
    """The request's predictions, checked whole (422 naming the first bad item)."""
    items = request.predictions
    _check_inputs(items, facts, settings)
    checked: list[CheckedPrediction] = []
    for index, item in enumerate(items):
        where = f"predictions.{index}"
        try:
            checked.append(_checked(item, facts, received=received, retention=retention))
        except ValueError as exc:
            raise InvalidInputError(f"invalid request: {where}: {exc}") from None
    return checked


def _check_inputs(
    items: Sequence[LoggedPrediction], facts: ModelFacts, settings: ServingConfig
) -> None:
    texts = [item.input for item in items if isinstance(item.input, str)]
    records = [item.input for item in items if isinstance(item.input, dict)]
    if texts and records:
        raise InvalidInputError("invalid request: the inputs mix texts and records")
    schema = facts.inputs
    if texts:
        if schema is not None and not schema.is_text:
            raise InvalidInputError("invalid request: this model takes records, not texts")
        parse_inputs(InputSchema.text(), {"texts": texts}, settings)
    if records:
        if schema is not None and schema.is_text:
            raise InvalidInputError("invalid request: this model takes texts, not records")
        if schema is not None:
            parse_inputs(schema, {"records": records}, settings)


def _checked(
    item: LoggedPrediction, facts: ModelFacts, *, received: float, retention: float
) -> CheckedPrediction:
    timestamp = _unix_time(item.timestamp, received)
    if timestamp > received + FUTURE_TOLERANCE_SECONDS:
        raise ValueError(
            f"timestamp lies {timestamp - received:.0f} s in the future "
            f"(tolerance {FUTURE_TOLERANCE_SECONDS:.0f} s): check the clock"
        )
    if timestamp < received - retention:
        raise ValueError(
            "timestamp is older than serving.prediction_log_retention: feedback could not join it"
        )
    classified = item.class_ is not None or item.probabilities is not None
    if classified == (item.value is not None):
        raise ValueError(
            "give 'class' and/or 'probabilities' (classification), or 'value' (regression)"
        )
    if item.value is not None:
        if facts.output == "classification":
            raise ValueError("this model classifies: give 'class', not 'value'")
        value = float(item.value)
        return CheckedPrediction(item.id, item.input, format(value, ".6g"), None, value, timestamp)
    if facts.output == "regression":
        raise ValueError("this model is a regression: give 'value', not 'class'")
    predicted, confidence = _class_and_confidence(item, facts.classes)
    return CheckedPrediction(item.id, item.input, predicted, confidence, None, timestamp)


def _class_and_confidence(
    item: LoggedPrediction, classes: Collection[str] | None
) -> tuple[str, float | None]:
    probabilities = item.probabilities
    confidence = None if item.confidence is None else float(item.confidence)
    if probabilities is not None:
        if not probabilities:
            raise ValueError("'probabilities' is empty")
        for label, probability in probabilities.items():
            if not (math.isfinite(probability) and 0.0 <= probability <= 1.0):
                raise ValueError(f"probability of {label!r} must lie in [0, 1]")
        if abs(sum(probabilities.values()) - 1.0) > PROBABILITY_TOLERANCE:
            raise ValueError("'probabilities' must add up to 1")
        _known(list(probabilities), classes)
    predicted = item.class_
    if predicted is None:
        assert probabilities is not None
        predicted = max(probabilities, key=probabilities.__getitem__)
    elif probabilities is not None and predicted not in probabilities:
        raise ValueError(f"class {predicted!r} is not in 'probabilities'")
    _known([predicted], classes)
    if confidence is None and probabilities is not None:
        confidence = float(probabilities[predicted])
    return predicted, confidence


def _known(labels: Sequence[str], classes: Collection[str] | None) -> None:
    if classes is None:
        return
    unknown = [label for label in labels if label not in classes]
    if unknown:
        listed = ", ".join(repr(c) for c in sorted(classes)[:20])
        raise ValueError(f"class {unknown[0]!r} is not one of the model's classes ({listed})")


def _unix_time(stamp: datetime | float | None, received: float) -> float:
    if stamp is None:
        return received
    seconds = stamp.timestamp() if isinstance(stamp, datetime) else float(stamp)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("timestamp must be a time after 1970")
    return seconds


def log_entries(
    model: str, version: int, predictions: Sequence[CheckedPrediction]
) -> list[LoggedEntry]:
    """The prediction log's rows of ``predictions``, under their namespaced keys (an id twice
    in one request: its first)."""
    entries: dict[str, LoggedEntry] = {}
    for item in predictions:
        key = external_log_id(model, item.client_id)
        entries.setdefault(
            key,
            LoggedEntry(
                key,
                model,
                version,
                item.predicted,
                item.timestamp,
                None if item.input is None else item_digest(item.input),
            ),
        )
    return list(entries.values())


def logged_insights(
    model: str,
    version: int,
    predictions: Sequence[CheckedPrediction],
    facts: ModelFacts,
    feature_rate: float,
) -> list[tuple[dict[str, float], dict[str, str], float]]:
    """The insights each logged prediction reports: values, tags, time. A record's features
    (with probability ``feature_rate``) against the loaded version's schema, or, for a model
    not loaded here, its numbers and booleans; the class as ``predicted_class`` when a loaded
    version has it."""
    points: list[tuple[dict[str, float], dict[str, str], float]] = []
    for item in predictions:
        tags = {"model": model, "version": str(version)}
        values: dict[str, float] = {}
        if item.value is not None:
            values["prediction"] = item.value
        else:
            tags["class"] = item.predicted
            if item.confidence is not None:
                values["model_confidence"] = item.confidence
            if item.predicted in facts.labels:
                values[PREDICTED_CLASS] = float(facts.labels.index(item.predicted))
        if isinstance(item.input, str):
            values["text_length"] = float(len(item.input))
        elif isinstance(item.input, dict):
            values.update(_features(item.input, facts.inputs, feature_rate))
        if values:
            points.append((values, tags, item.timestamp))
    return points


def _features(record: dict[str, Any], schema: InputSchema | None, rate: float) -> dict[str, float]:
    if schema is not None:
        return sampled_features(schema, record, rate)
    if rate <= 0.0 or (rate < 1.0 and random.random() >= rate):
        return {}
    return {
        FEATURE_METRIC_PREFIX + name: float(value)
        for name, value in record.items()
        if isinstance(value, bool | int | float)
    }


def _first_of_each(
    model: str, checked: Sequence[CheckedPrediction], fresh: set[str]
) -> list[CheckedPrediction]:
    """The predictions logged now: those whose key ``fresh`` holds, each id once."""
    new: dict[str, CheckedPrediction] = {}
    for item in checked:
        key = external_log_id(model, item.client_id)
        if key in fresh:
            new.setdefault(key, item)
    return list(new.values())


Report = Callable[[Any, dict[str, float], dict[str, str], float], None]
"""``report(state, values, tags, timestamp)``: report one point's insights."""


def logged_predictions_router(
    insights_key: Callable[..., Any], report: Report, responses: dict[int | str, dict[str, Any]]
) -> APIRouter:
    """The router; ``insights_key`` checks the ``insights`` scope and ``report`` reports a
    logged prediction's insights."""
    router = APIRouter(prefix="/v1/models", responses=responses)

    @router.post(
        "/{name}/predictions",
        response_model=LogPredictionsResponse,
        tags=["insights"],
        openapi_extra=request_body_schema(LogPredictionsRequest),
        summary="Log predictions a model served elsewhere made, for feedback",
    )
    async def log_predictions(
        name: str, request: Request, key: ApiKeyInfo = Depends(insights_key)
    ) -> LogPredictionsResponse:
        state = request.app.state.serving
        settings: ServingConfig = state.config.serving
        known = model_facts(state, name)
        data = await read_json_body(request, settings.max_body_bytes)
        if (
            isinstance(data, dict)
            and isinstance(data.get("predictions"), list)
            and len(data["predictions"]) > settings.max_texts_per_request
        ):
            raise LimitError(
                f"{len(data['predictions'])} predictions in one request exceed "
                f"serving.max_texts_per_request ({settings.max_texts_per_request})",
                "serving.max_texts_per_request",
            )
        body = parse_body(LogPredictionsRequest, data)
        log = state.predictions
        checked = check_logged(body, known, settings, received=time.time(), retention=log.retention)
        fresh = await anyio.to_thread.run_sync(
            log.write_external, log_entries(name, body.version, checked)
        )
        new = _first_of_each(name, checked, fresh)
        for values, tags, timestamp in logged_insights(
            name, body.version, new, known, settings.feature_insights_rate
        ):
            report(state, values, tags, timestamp)
        return LogPredictionsResponse(accepted=len(new), duplicates=len(checked) - len(new))

    return router
