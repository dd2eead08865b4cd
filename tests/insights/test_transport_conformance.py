"""Every built-in insight transport passes driftloop.testing's transport suite: ``local://``
into a metric store, ``kafka://`` through a real broker and an ingest worker, ``https://`` to a
real driftloop server's ``POST /v1/insights``."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from driftloop.config import Config, KafkaConfig, MetricsConfig
from driftloop.database import open_database
from driftloop.insights import InsightsClient
from driftloop.insights.http import HttpTransport
from driftloop.insights.local import LocalTransport
from driftloop.insights.transports import Transport
from driftloop.metrics.points import MetricPoint
from driftloop.metrics.sql import SqlMetricStore
from driftloop.serving import ApiKeyStore, InMemoryModelSource, Scope, create_app
from driftloop.testing.checks import ConformanceError, TransportSubject, check_transport
from serving.live import live_server


class Received:
    """A listener that keeps every point it is handed, in order."""

    def __init__(self) -> None:
        self._points: list[MetricPoint] = []
        self._lock = threading.Lock()

    def __call__(self, points: Sequence[MetricPoint]) -> None:
        with self._lock:
            self._points.extend(points)

    def points(self) -> list[MetricPoint]:
        with self._lock:
            return list(self._points)


def sql_store(tmp_path: Path) -> SqlMetricStore:
    return SqlMetricStore.from_config(
        open_database(f"sqlite:///{tmp_path / 'metrics.db'}"), MetricsConfig()
    )


def local_transport(store: SqlMetricStore, received: Received) -> LocalTransport:
    transport = LocalTransport(store)
    transport.add_listener(received)
    return transport


def test_local_transport(tmp_path: Path) -> None:
    store, received = sql_store(tmp_path), Received()
    check_transport(TransportSubject(lambda: local_transport(store, received), received.points))


def test_http_transport_to_a_real_server(tmp_path: Path) -> None:
    config = Config(store=f"sqlite:///{tmp_path / 'driftloop.db'}", base_dir=tmp_path)
    database = open_database(config.store, base_dir=tmp_path)
    received = Received()
    server_insights = InsightsClient(
        local_transport(sql_store(tmp_path), received),
        outbox=tmp_path / "outbox",
        flush_interval=0.02,
    )
    key = ApiKeyStore(database).create(Scope.INSIGHTS, name="elsewhere").key
    app = create_app(
        config,
        model_source=InMemoryModelSource(),
        insights=server_insights,
        api_keys=ApiKeyStore(database),
    )
    try:
        with live_server(app) as url:
            check_transport(
                TransportSubject(lambda: HttpTransport(url, key, max_points=200), received.points)
            )
    finally:
        server_insights.close()


@pytest.mark.kafka
def test_kafka_transport_through_an_ingest_worker(kafka_bootstrap: str, tmp_path: Path) -> None:
    from driftloop.insights.kafka import KafkaIngestWorker, KafkaTransport, ensure_topic

    topic = f"driftloop-conformance-{uuid.uuid4().hex[:10]}"
    ensure_topic(kafka_bootstrap, topic, 3)
    settings = KafkaConfig.model_validate(
        {
            "group_id": f"conformance-{uuid.uuid4().hex[:8]}",
            "session_timeout": "2s",
            "heartbeat_interval": "0.5s",
            "poll_timeout": "0.1s",
            "max_points_per_message": 100,
        }
    )
    received = Received()
    worker = KafkaIngestWorker(
        kafka_bootstrap, topic, sql_store(tmp_path), settings, listeners=[received]
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        check_transport(
            TransportSubject(
                lambda: KafkaTransport(kafka_bootstrap, topic, settings),
                received.points,
                timeout=30.0,
            )
        )
    finally:
        stop.set()
        thread.join(timeout=30)


class DroppingTransport(Transport):
    """Loses the last point of every batch: what the suite is there to catch."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    def publish(self, points: Sequence[MetricPoint]) -> None:
        self.inner.publish(list(points)[:-1])


class ReorderingTransport(Transport):
    """Delivers each batch backwards."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    def publish(self, points: Sequence[MetricPoint]) -> None:
        self.inner.publish(list(points)[::-1])


@pytest.fixture
def store_and_received(tmp_path: Path) -> tuple[SqlMetricStore, Received]:
    return sql_store(tmp_path), Received()


def test_the_suite_catches_a_lost_point_and_a_wrong_order(
    store_and_received: tuple[SqlMetricStore, Received],
) -> None:
    store, received = store_and_received
    with pytest.raises(ConformanceError, match=r"delivers_every_point_once.*timed out"):
        check_transport(
            TransportSubject(
                lambda: DroppingTransport(local_transport(store, received)),
                received.points,
                timeout=0.2,
            )
        )
    with pytest.raises(ConformanceError, match="out of order"):
        check_transport(
            TransportSubject(
                lambda: ReorderingTransport(local_transport(store, received)), received.points
            )
        )
