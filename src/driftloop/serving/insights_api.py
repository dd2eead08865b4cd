"""``POST /v1/insights``: insight points from a service that runs its own model.

A server elsewhere (a Flask app, a batch job, SageMaker) needs nothing but an HTTP client and a
key with the ``insights`` scope (or ``admin``) to put points into the same transport and store
as the points of the models driftloop serves; :class:`~driftloop.insights.http.HttpTransport`
is that client for the ``report_insights`` SDK.

The body is read and validated like every other (size cap while streaming, strict JSON
schema, 422 naming the bad point and field), capped at ``serving.max_insight_points`` points,
and published to the transport synchronously: ``202`` means the points are in the store (or in
Kafka); a transport that is down answers ``503`` and the sender retries. Points keep the
``point_id`` the sender gave them, so a batch sent twice is stored once.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, Field, StrictFloat, StrictInt, field_validator

from driftloop.errors import BackendUnavailableError, InvalidInputError
from driftloop.metrics.points import MetricPoint, PointBatch
from driftloop.serving.keys import ApiKeyInfo
from driftloop.serving.schemas import (
    LimitError,
    StrictBody,
    parse_body,
    read_json_body,
    request_body_schema,
)

MAX_NAME_CHARS = 128
MAX_TAGS = 32
MAX_TAG_KEY_CHARS = 64
MAX_TAG_VALUE_CHARS = 256
MAX_POINT_ID_CHARS = 128
FUTURE_TOLERANCE_SECONDS = 300.0
"""How far ahead of the server's clock a point's timestamp may lie (clock skew)."""


def _printable(text: str, what: str, limit: int) -> str:
    if not text or len(text) > limit:
        raise ValueError(f"{what} must have 1 to {limit} characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ValueError(f"{what} must not contain control characters")
    return text


class InsightPoint(StrictBody):
    """One observation of one metric."""

    name: str = Field(description="metric name, e.g. model_confidence")
    value: StrictFloat | StrictInt = Field(description="a finite number")
    timestamp: AwareDatetime | StrictFloat | StrictInt | None = Field(
        None, description="ISO 8601 with a time zone, or unix seconds; default: when received"
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description='e.g. {"model": "reviews", "version": "3"}'
    )
    point_id: str | None = Field(
        None, description="idempotency key: a point sent again with the same id is stored once"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        return _printable(name, "name", MAX_NAME_CHARS)

    @field_validator("value")
    @classmethod
    def _value(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("value must be a finite number")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: dict[str, str]) -> dict[str, str]:
        if len(tags) > MAX_TAGS:
            raise ValueError(f"at most {MAX_TAGS} tags per point, got {len(tags)}")
        for key, value in tags.items():
            _printable(key, "a tag key", MAX_TAG_KEY_CHARS)
            _printable(value, f"tag {key!r}", MAX_TAG_VALUE_CHARS)
        return tags

    @field_validator("point_id")
    @classmethod
    def _point_id(cls, point_id: str | None) -> str | None:
        return None if point_id is None else _printable(point_id, "point_id", MAX_POINT_ID_CHARS)

    def unix_time(self, received: float) -> float:
        stamp = self.timestamp
        if stamp is None:
            return received
        seconds = stamp.timestamp() if isinstance(stamp, datetime) else float(stamp)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError("timestamp must be a time after 1970")
        return seconds


class InsightsRequest(StrictBody):
    """``{"points": [{"name": ..., "value": ..., "tags": {...}}, ...]}``."""

    points: list[InsightPoint] = Field(description="the points, at least one")


class InsightsResponse(BaseModel):
    accepted: int = Field(description="points delivered to the transport")


def parse_points(data: Any, *, max_points: int, received: float) -> PointBatch:
    """The request's points as a batch, or a 413/422 naming the first bad one."""
    if (
        isinstance(data, dict)
        and isinstance(data.get("points"), list)
        and len(data["points"]) > max_points
    ):
        raise LimitError(
            f"{len(data['points'])} points in one request exceed serving.max_insight_points "
            f"({max_points}); send them in several requests",
            "serving.max_insight_points",
        )
    points = parse_body(InsightsRequest, data).points
    if not points:
        raise InvalidInputError("'points' is empty: send at least one point")
    latest = received + FUTURE_TOLERANCE_SECONDS
    batch: list[MetricPoint] = []
    for index, point in enumerate(points):
        try:
            timestamp = point.unix_time(received)
        except ValueError as exc:
            raise InvalidInputError(f"invalid request: points.{index}.timestamp: {exc}") from None
        if timestamp > latest:
            raise InvalidInputError(
                f"invalid request: points.{index}.timestamp lies "
                f"{timestamp - received:.0f} s in the future (tolerance "
                f"{FUTURE_TOLERANCE_SECONDS:.0f} s): check the sender's clock"
            )
        batch.append(
            MetricPoint(
                point.name,
                float(point.value),
                timestamp,
                dict(point.tags),
                point.point_id or uuid.uuid4().hex,
            )
        )
    return PointBatch.of(batch)


def insights_router(
    insights_key: Callable[..., Any], responses: dict[int | str, dict[str, Any]]
) -> APIRouter:
    """The router; ``insights_key`` is the dependency that checks the ``insights`` scope and
    ``responses`` the error responses every route documents."""
    router = APIRouter(prefix="/v1", responses=responses)

    @router.post(
        "/insights",
        status_code=202,
        response_model=InsightsResponse,
        tags=["insights"],
        openapi_extra=request_body_schema(InsightsRequest),
        summary="Report insight points from a model served elsewhere",
    )
    async def report(request: Request, key: ApiKeyInfo = Depends(insights_key)) -> JSONResponse:
        state = request.app.state.serving
        settings = state.config.serving
        data = await read_json_body(request, settings.max_body_bytes)
        points = parse_points(data, max_points=settings.max_insight_points, received=time.time())
        client = state.insights
        if client is None:
            raise BackendUnavailableError("insights: this server has no transport configured")
        await anyio.to_thread.run_sync(client.transport.publish, points)
        return JSONResponse(InsightsResponse(accepted=len(points)).model_dump(), status_code=202)

    return router
