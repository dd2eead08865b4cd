"""What :class:`~driftloop.client.Client` and :class:`~driftloop.client.AsyncClient` share: each
operation is a :class:`Call` (method, path, body, how to read the answer), built here whatever
the HTTP client, and an answer is read (or its error mapped to driftloop's own exception) here
too; the two clients only send."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from driftloop import errors
from driftloop.client.results import (
    FeedbackResult,
    InsightPoint,
    LoggedPrediction,
    LoggedResult,
    ModelStatus,
    MonitorStatus,
    Prediction,
    PredictResult,
)
from driftloop.errors import BackendUnavailableError, DriftloopError, InvalidInputError

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0

_BY_STATUS: dict[int, type[DriftloopError]] = {
    401: errors.AuthError,
    403: errors.ForbiddenError,
    404: errors.NotFoundError,
    409: errors.ConflictError,
    413: errors.PayloadTooLargeError,
    422: errors.InvalidInputError,
    429: errors.RateLimitedError,
    503: errors.BackendUnavailableError,
}


@dataclass(frozen=True)
class Call(Generic[T]):
    """One operation: what to send, and ``read`` to turn the JSON answer into its result."""

    method: str
    path: str
    read: Callable[[Any], T]
    body: Any = None
    params: Mapping[str, str] | None = None


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def model_path(name: str, action: str = "") -> str:
    return f"/v1/models/{quote(name, safe='')}" + (f"/{action}" if action else "")


# --- reading answers ---------------------------------------------------------------------


def _read_prediction(item: Mapping[str, Any]) -> Prediction:
    if "class" not in item and "value" in item:  # a regression model's answer
        interval = item.get("interval")
        return Prediction(
            id=item["id"],
            label=None,
            confidence=None,
            probabilities={},
            value=float(item["value"]),
            interval=None if interval is None else (float(interval[0]), float(interval[1])),
        )
    return Prediction(
        id=item["id"],
        label=item["class"],
        confidence=float(item["confidence"]),
        probabilities={k: float(v) for k, v in item["probabilities"].items()},
    )


def _read_predict(data: Mapping[str, Any]) -> PredictResult:
    return PredictResult(
        model=data["model"],
        version=int(data["version"]),
        predictions=[_read_prediction(p) for p in data["predictions"]],
    )


_MODEL_FIELDS = ("name", "ready", "version", "content_hash", "labels", "error")


def _read_model(data: Mapping[str, Any]) -> ModelStatus:
    return ModelStatus(
        name=data["name"],
        ready=bool(data["ready"]),
        version=data.get("version"),
        content_hash=data.get("content_hash"),
        labels=list(data.get("labels", [])),
        error=data.get("error"),
        extra={k: v for k, v in data.items() if k not in _MODEL_FIELDS},
    )


def _read_monitor(data: Mapping[str, Any]) -> MonitorStatus:
    return MonitorStatus(
        name=data["name"],
        type=data["type"],
        metric=data["metric"],
        state=data.get("state"),
        error=data.get("error"),
        groups=list(data.get("groups", [])),
    )


def error_from(response: httpx.Response) -> DriftloopError:
    """The driftloop exception of an error answer: the class the server named when it is one
    of :mod:`driftloop.errors` with this status, else the status's class."""
    status = response.status_code
    kind, message, limit = "", response.text[:500], None
    try:
        detail = response.json()["error"]
        kind, message = str(detail["type"]), str(detail["message"])
        limit = str(detail["limit"]) if detail.get("limit") is not None else None
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    found = getattr(errors, kind, None)
    if not (
        isinstance(found, type)
        and issubclass(found, DriftloopError)
        and found.status_code == status
    ):
        found = _BY_STATUS.get(status, DriftloopError)
    error = found(
        f"{response.request.method} {response.request.url.path} answered {status}: {message}"
    )
    error.status_code = status
    if isinstance(error, errors.LimitError | errors.InvalidTextError):
        error.limit = limit
    if isinstance(error, errors.RateLimitedError | errors.OverloadedError):
        with contextlib.suppress(ValueError):
            error.retry_after = float(response.headers.get("retry-after", error.retry_after))
    return error


def result_of(call: Call[T], response: httpx.Response) -> T:
    """``call``'s result from ``response``; raises :func:`error_from` of an error answer, and
    :class:`BackendUnavailableError` for an answer that is not a driftloop server's."""
    if response.status_code >= 400:
        raise error_from(response)
    try:
        return call.read(response.json())
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendUnavailableError(
            f"{call.method} {call.path}: the server answered {response.status_code} with a body "
            f"this client cannot read ({exc}): is the URL a driftloop server?"
        ) from exc


# --- the operations ----------------------------------------------------------------------


def predict_call(
    model: str, texts: Sequence[str] | None, records: Sequence[Mapping[str, Any]] | None
) -> Call[PredictResult]:
    """``{"texts": [...]}`` for a text model, ``{"records": [...]}`` for a record model."""
    if texts is not None and records is None:
        body = _texts_body(texts)
    elif records is not None and texts is None:
        body = _records_body(records)
    else:
        raise InvalidInputError(
            "predict takes either texts (a text model) or records=[...] (a record model)"
        )
    return Call("POST", model_path(model, "predict"), _read_predict, body)


def _texts_body(texts: Sequence[str]) -> dict[str, Any]:
    if isinstance(texts, str):
        raise InvalidInputError("predict takes a list of texts; wrap one text in a list")
    if any(isinstance(text, Mapping) for text in texts):
        raise InvalidInputError("predict: pass records as records=[...], not as texts")
    return {"texts": list(texts)}


def _records_body(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    if isinstance(records, Mapping):
        raise InvalidInputError("predict takes a list of records; wrap one record in a list")
    return {"records": [dict(record) for record in records]}


def feedback_call(
    model: str, labels: Iterable[tuple[str, str] | tuple[str, str, str]]
) -> Call[FeedbackResult]:
    items = []
    for entry in labels:
        item = {"prediction_id": entry[0], "label": entry[1]}
        if len(entry) == 3:
            item["text"] = entry[2]
        items.append(item)
    return Call(
        "POST",
        model_path(model, "feedback"),
        lambda data: FeedbackResult(
            int(data["accepted"]), int(data["matched"]), int(data.get("relabelled", 0))
        ),
        {"feedback": items},
    )


def insights_call(points: Iterable[InsightPoint]) -> Call[int]:
    body = []
    for point in points:
        if not math.isfinite(point.value):
            raise InvalidInputError(f"insight {point.name!r}: {point.value} is not finite")
        item: dict[str, Any] = {"name": point.name, "value": point.value, "tags": dict(point.tags)}
        if point.timestamp is not None:
            item["timestamp"] = datetime.fromtimestamp(point.timestamp, UTC).isoformat()
        if point.point_id is not None:
            item["point_id"] = point.point_id
        body.append(item)
    return Call("POST", "/v1/insights", lambda data: int(data["accepted"]), {"points": body})


def log_predictions_call(
    model: str, predictions: Iterable[LoggedPrediction], version: int
) -> Call[LoggedResult]:
    body = []
    for prediction in predictions:
        item: dict[str, Any] = {"id": prediction.id}
        if prediction.input is not None:
            item["input"] = (
                prediction.input if isinstance(prediction.input, str) else dict(prediction.input)
            )
        for name, value in (
            ("class", prediction.label),
            ("confidence", prediction.confidence),
            ("value", prediction.value),
        ):
            if value is not None:
                item[name] = value
        if prediction.probabilities is not None:
            item["probabilities"] = dict(prediction.probabilities)
        if prediction.timestamp is not None:
            item["timestamp"] = datetime.fromtimestamp(prediction.timestamp, UTC).isoformat()
        body.append(item)
    return Call(
        "POST",
        model_path(model, "predictions"),
        lambda data: LoggedResult(int(data["accepted"]), int(data["duplicates"])),
        {"version": version, "predictions": body},
    )


def models_call() -> Call[list[ModelStatus]]:
    return Call("GET", "/v1/models", lambda data: [_read_model(m) for m in data["models"]])


def model_call(name: str) -> Call[ModelStatus]:
    return Call("GET", model_path(name), _read_model)


def monitors_call() -> Call[list[MonitorStatus]]:
    return Call("GET", "/v1/monitors", lambda data: [_read_monitor(m) for m in data])


def deploy_call(model: str, version: int) -> Call[ModelStatus]:
    return Call("POST", model_path(model, "deploy"), _read_model, {"version": version})


def rollback_call(model: str) -> Call[ModelStatus]:
    return Call("POST", model_path(model, "rollback"), _read_model)
