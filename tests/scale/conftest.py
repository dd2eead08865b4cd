"""Shared pieces of the scale-out tests: Kafka topics, point counts, configs on disk."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from driftloop.database import Database
from driftloop.metrics.sql import SqlMetricStore
from driftloop.metrics.tables import metric_points


@dataclass(frozen=True)
class PointCount:
    """Raw rows and the rollups' count: a double-counted point shows in both."""

    rows: int
    distinct_ids: int
    rollup_count: int


def count_points(database: Database, metric: str = "model_confidence") -> PointCount:
    with database.engine.connect() as connection:
        rows = connection.execute(sa.select(sa.func.count()).select_from(metric_points)).scalar()
        distinct = connection.execute(
            sa.select(sa.func.count(sa.distinct(metric_points.c.point_id)))
        ).scalar()
    store = SqlMetricStore(
        database, raw_retention=86400 * 365 * 100, rollup_retention=86400 * 365 * 100
    )
    # a window longer than the raw query limit is answered from the 1-minute rollups
    results = store.query(metric, "count", 0.0, 4e9)
    rollup = int(sum(result.value or 0 for result in results))
    return PointCount(int(rows or 0), int(distinct or 0), rollup)


@pytest.fixture
def kafka_topic(kafka_bootstrap: str) -> Callable[[int], str]:
    """Create a new topic with N partitions and return its name."""
    from driftloop.insights.kafka import ensure_topic

    def make(partitions: int) -> str:
        topic = f"driftloop-scale-{uuid.uuid4().hex[:10]}"
        assert ensure_topic(kafka_bootstrap, topic, partitions)
        return topic

    return make


class AppServer:
    """An ASGI app served by uvicorn in a thread on 127.0.0.1 (a free port)."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> AppServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the app server did not start")
            time.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        port: int = self.server.servers[0].sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
