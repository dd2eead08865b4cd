"""``POST /v1/insights`` (a model served elsewhere reports its insights) and the ``https://``
transport that the ``report_insights`` SDK uses to call it, over a real uvicorn server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from driftloop.config import Config, InsightsConfig
from driftloop.database import Database
from driftloop.errors import AuthError, ConfigError, ForbiddenError
from driftloop.insights import InsightsClient
from driftloop.insights.http import HttpTransport, create_http_transport
from driftloop.insights.transports import open_transport
from driftloop.metrics.points import MetricPoint
from driftloop.metrics.sql import SqlMetricStore
from driftloop.serving import ApiKeyStore, InMemoryModelSource, Scope, create_app
from driftloop.testing.transports import MemoryTransport
from serving.live import live_server

pytestmark = pytest.mark.anyio

URL = "/v1/insights"
T0 = 1_760_000_000.0


@pytest.fixture
def insights_headers(api_keys: ApiKeyStore) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_keys.create(Scope.INSIGHTS, name='flask').key}"}


def point(**fields: Any) -> dict[str, Any]:
    return {"name": "model_confidence", "value": 0.9, "tags": {"model": "elsewhere"}, **fields}


async def test_points_reach_the_transport_with_their_tags_times_and_ids(
    client: httpx.AsyncClient, insights_headers: dict[str, str], transport: MemoryTransport
) -> None:
    body = {
        "points": [
            point(value=0.75, timestamp=T0, point_id="p-1"),
            point(
                name="latency_ms",
                value=12,
                timestamp="2025-10-09T08:53:20+00:00",
                tags={"model": "elsewhere", "version": "3"},
            ),
            point(value=0.5),
        ]
    }
    before = time.time()
    response = await client.post(URL, json=body, headers=insights_headers)
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 3}
    first, second, third = transport.points
    assert (first.name, first.value, first.timestamp, first.point_id) == (
        "model_confidence",
        0.75,
        T0,
        "p-1",
    )
    assert dict(first.tags) == {"model": "elsewhere"}
    assert (second.name, second.value, second.timestamp) == ("latency_ms", 12.0, T0)
    assert dict(second.tags) == {"model": "elsewhere", "version": "3"}
    assert before <= third.timestamp <= time.time()  # no timestamp: when received
    assert third.point_id  # every point gets an idempotency key


async def test_only_insights_and_admin_keys_may_report(
    client: httpx.AsyncClient,
    insights_headers: dict[str, str],
    predict_headers: dict[str, str],
    admin_headers: dict[str, str],
    transport: MemoryTransport,
) -> None:
    body = {"points": [point()]}
    assert (await client.post(URL, json=body)).status_code == 401
    refused = await client.post(URL, json=body, headers=predict_headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "ForbiddenError"
    assert (await client.post(URL, json=body, headers=admin_headers)).status_code == 202
    assert (await client.post(URL, json=body, headers=insights_headers)).status_code == 202
    assert len(transport.points) == 2


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"points": []}, "'points' is empty"),
        ({"points": [point(value="0.9")]}, "points.0.value"),
        ({"points": [point(value=True)]}, "points.0.value"),
        ({"points": [point(), point(name="")]}, "points.1.name"),
        ({"points": [point(name="a\nb")]}, "control characters"),
        ({"points": [point(tags={"model": 3})]}, "points.0.tags.model"),
        ({"points": [point(tags={f"t{i}": "x" for i in range(33)})]}, "at most 32 tags"),
        ({"points": [point(timestamp="2025-10-09T08:53:20")]}, "points.0.timestamp"),
        ({"points": [point(timestamp=time.time() + 3600)]}, "in the future"),
        ({"points": [point(timestamp=-5)]}, "after 1970"),
        ({"points": [point(colour="red")]}, "points.0.colour: unknown field"),
        ({"point": [point()]}, "unknown field"),
    ],
)
async def test_bad_points_are_refused_naming_the_point_and_field(
    client: httpx.AsyncClient,
    insights_headers: dict[str, str],
    transport: MemoryTransport,
    bad: dict[str, Any],
    named: str,
) -> None:
    response = await client.post(URL, json=bad, headers=insights_headers)
    assert response.status_code == 422, response.text
    assert named in response.json()["error"]["message"]
    assert transport.points == []  # nothing of a refused request is kept


async def test_a_non_finite_value_is_refused(
    client: httpx.AsyncClient, insights_headers: dict[str, str]
) -> None:
    raw = b'{"points": [{"name": "x", "value": NaN}]}'
    response = await client.post(URL, content=raw, headers=insights_headers)
    assert response.status_code == 422
    assert "finite" in response.json()["error"]["message"]


async def test_too_many_points_are_refused_before_validation(
    config: Config,
    source: InMemoryModelSource,
    insights: InsightsClient,
    api_keys: ApiKeyStore,
    insights_headers: dict[str, str],
) -> None:
    settings = config.serving.model_copy(update={"max_insight_points": 3})
    app = create_app(
        config.model_copy(update={"serving": settings}),
        model_source=source,
        insights=insights,
        api_keys=api_keys,
    )
    body = {"points": [{"n": 1}] * 4}  # invalid too: the count is checked first
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://driftloop.test"
        ) as http,
    ):
        response = await http.post(URL, json=body, headers=insights_headers)
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["limit"] == "serving.max_insight_points"
    assert "4 points in one request exceed serving.max_insight_points (3)" in error["message"]


async def test_a_transport_that_is_down_answers_503_and_keeps_nothing(
    client: httpx.AsyncClient, insights_headers: dict[str, str], transport: MemoryTransport
) -> None:
    transport.down = True
    response = await client.post(URL, json={"points": [point()]}, headers=insights_headers)
    assert response.status_code == 503
    transport.down = False
    assert (
        await client.post(URL, json={"points": [point()]}, headers=insights_headers)
    ).status_code == 202


# --- the https:// transport of the SDK, against a real server --------------------------


@pytest.fixture
def stored_app(
    config: Config,
    source: InMemoryModelSource,
    api_keys: ApiKeyStore,
    database: Database,
    tmp_path: Path,
) -> Iterator[tuple[FastAPI, SqlMetricStore]]:
    """The server with the default local transport: points go into its SQL metric store."""
    store = SqlMetricStore.from_config(database, config.metrics)
    server_insights = InsightsClient(
        open_transport(config, store=store), outbox=tmp_path / "server-outbox", flush_interval=0.02
    )
    yield (
        create_app(config, model_source=source, insights=server_insights, api_keys=api_keys),
        store,
    )
    server_insights.close()


def send(url: str, key: str, points: list[MetricPoint]) -> None:
    transport = HttpTransport(url, key)
    try:
        transport.publish(points)
    finally:
        transport.close()


def stored(store: SqlMetricStore, name: str) -> list[float]:
    return sorted(p.value for p in store.points(name, 0.0, time.time() + 10))


def test_report_insights_over_https_transport_lands_in_the_servers_store(
    stored_app: tuple[FastAPI, SqlMetricStore], api_keys: ApiKeyStore, tmp_path: Path
) -> None:
    app, store = stored_app
    key = api_keys.create(Scope.INSIGHTS, name="flask").key
    with live_server(app) as url:
        config = Config(
            base_dir=tmp_path,
            transport=url + "/",
            insights=InsightsConfig(api_key=key, http_max_points=3),
        )
        transport = open_transport(config)
        assert isinstance(transport, HttpTransport)
        with InsightsClient(
            transport, outbox=tmp_path / "sdk-outbox", flush_interval=0.02, owns_transport=True
        ) as sdk:
            for value in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7):  # 3 requests of <= 3 points
                sdk.report({"model_confidence": value}, {"model": "elsewhere"})
            assert sdk.flush()
            assert sdk.stats.published == 7
        assert stored(store, "model_confidence") == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
        # a batch sent again (a timeout after the server stored it) is stored once
        batch = store.points("model_confidence", 0.0, time.time() + 10)[:2]
        send(url, key, batch)
        assert len(stored(store, "model_confidence")) == 7


def test_while_the_server_is_down_the_sdk_spools_and_replays_everything(
    stored_app: tuple[FastAPI, SqlMetricStore], api_keys: ApiKeyStore, tmp_path: Path
) -> None:
    app, store = stored_app
    key = api_keys.create(Scope.INSIGHTS, name="flask").key
    with live_server(app) as url:
        port = int(url.rsplit(":", 1)[1])
    sdk = InsightsClient(
        HttpTransport(url, key, timeout=1.0),
        outbox=tmp_path / "sdk-outbox",
        flush_interval=0.02,
        max_retry_interval=0.1,
        owns_transport=True,
    )
    try:
        for value in (1.0, 2.0, 3.0):
            sdk.report({"latency_ms": value}, {"model": "elsewhere"})
        assert not sdk.flush()  # nobody listens on the port
        assert sdk.stats.outbox_pending == 3
        with live_server(app, port=port):
            deadline = time.monotonic() + 10
            while sdk.stats.outbox_pending and time.monotonic() < deadline:
                sdk.flush()
                time.sleep(0.05)
            assert stored(store, "latency_ms") == [1.0, 2.0, 3.0]
            assert sdk.stats.replayed == 3
    finally:
        sdk.close(flush=False)


def test_a_refused_key_raises_the_error_the_server_named(
    stored_app: tuple[FastAPI, SqlMetricStore], predict_key: str
) -> None:
    app, store = stored_app
    one = [MetricPoint("model_confidence", 0.5, time.time(), {"model": "m"}, "id-1")]
    with live_server(app) as url:
        with pytest.raises(ForbiddenError, match=r"403.*scope"):
            send(url, predict_key, one)
        with pytest.raises(AuthError, match="401"):
            send(url, "dl_00000000_" + "x" * 43, one)
    assert stored(store, "model_confidence") == []


def test_an_https_transport_needs_a_key_and_a_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRIFTLOOP_INSIGHTS_KEY", raising=False)
    with pytest.raises(ConfigError, match="DRIFTLOOP_INSIGHTS_KEY"):
        create_http_transport("https://driftloop.example/", config=Config(base_dir=tmp_path))
    with pytest.raises(ConfigError, match="expected http"):
        create_http_transport("https:///v1", config=Config(base_dir=tmp_path))
    monkeypatch.setenv("DRIFTLOOP_INSIGHTS_KEY", "dl_12345678_" + "k" * 43)
    transport = create_http_transport(
        "https://driftloop.example/prefix/", config=Config(base_dir=tmp_path)
    )
    assert transport.url == "https://driftloop.example/prefix/v1/insights"
    transport.close()
