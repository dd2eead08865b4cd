"""``transport: https://driftloop.example/``: insight points over HTTP to a driftloop server.

For a service that runs its own model and has nothing of driftloop but ``pip install
driftloop``: :func:`~driftloop.insights.client.report_insights` batches, spools and replays as
with any transport, and this transport sends each batch to the server's ``POST /v1/insights``
with a key of the ``insights`` scope (``insights.api_key``, else ``$DRIFTLOOP_INSIGHTS_KEY``).

Every point keeps its ``point_id``, so a batch sent again after a timeout is stored once. A
batch larger than ``insights.http_max_points`` goes in several requests. A server that cannot
be reached, answers 5xx or 429 raises :class:`BackendUnavailableError` (the SDK spools and
retries); a refused key or a refused point raises the error the server named, which the SDK
also spools and retries after logging it, so nothing is lost while the key is fixed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from driftloop.errors import (
    AuthError,
    BackendUnavailableError,
    ConfigError,
    DriftloopError,
    ForbiddenError,
    InvalidInputError,
)
from driftloop.insights.transports import Transport
from driftloop.metrics.points import MetricPoint

if TYPE_CHECKING:
    from driftloop.config import Config

KEY_ENVIRONMENT_VARIABLE = "DRIFTLOOP_INSIGHTS_KEY"
INSIGHTS_PATH = "/v1/insights"


class HttpTransport(Transport):
    """Sends batches to ``{base_url}/v1/insights``; one pooled HTTP connection."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 5.0,
        max_points: int = 2_000,
        client: httpx.Client | None = None,
    ) -> None:
        if not api_key:
            raise ConfigError(
                f"transport {base_url}: no API key: set insights.api_key or "
                f"${KEY_ENVIRONMENT_VARIABLE} to a key with the insights scope"
            )
        self.url = base_url.rstrip("/") + INSIGHTS_PATH
        self.max_points = max_points
        self._client = client or httpx.Client(
            timeout=timeout, headers={"Authorization": f"Bearer {api_key}"}
        )

    def publish(self, points: Sequence[MetricPoint]) -> None:
        for start in range(0, len(points), self.max_points):
            self._send(points[start : start + self.max_points])

    def _send(self, points: Sequence[MetricPoint]) -> None:
        body = {"points": [_point_json(point) for point in points]}
        try:
            response = self._client.post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise BackendUnavailableError(f"insights: cannot reach {self.url}: {exc}") from exc
        if response.status_code == 202:
            return
        raise _error_for(response, self.url)

    def close(self) -> None:
        self._client.close()


def _point_json(point: MetricPoint) -> dict[str, Any]:
    return {
        "name": point.name,
        "value": point.value,
        "timestamp": datetime.fromtimestamp(point.timestamp, UTC).isoformat(),
        "tags": dict(point.tags),
        "point_id": point.point_id,
    }


def _error_for(response: httpx.Response, url: str) -> DriftloopError:
    try:
        detail = response.json().get("error", {})
        message = str(detail.get("message") or response.text[:200])
    except (ValueError, AttributeError):
        message = response.text[:200]
    status = response.status_code
    what = f"insights: {url} answered {status}: {message}"
    if status == 401:
        return AuthError(what)
    if status == 403:
        return ForbiddenError(what)
    if status in (413, 422):
        return InvalidInputError(what)
    return BackendUnavailableError(what)


def create_http_transport(
    url: str, *, config: Config | None = None, store: object = None
) -> HttpTransport:
    """Factory for ``http://`` and ``https://`` URLs (registered in the transports family)."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ConfigError(f"transport {url!r}: expected http(s)://HOST[:PORT][/PREFIX]")
    settings = config.insights if config is not None else None
    api_key = (settings.api_key if settings is not None else None) or os.environ.get(
        KEY_ENVIRONMENT_VARIABLE, ""
    )
    if settings is None:
        return HttpTransport(url, api_key)
    return HttpTransport(
        url, api_key, timeout=settings.http_timeout, max_points=settings.http_max_points
    )
