"""The SQL metric store passes driftloop.testing's metric store suite, on SQLite and (with the
``postgres`` marker) on PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from driftloop.config import MetricsConfig
from driftloop.database import Database
from driftloop.metrics.points import MetricPoint
from driftloop.metrics.sql import SqlMetricStore
from driftloop.testing.checks import ConformanceError, MetricStoreSubject, check_metric_store


def test_sql_metric_store(database: Database) -> None:
    check_metric_store(
        MetricStoreSubject(lambda: SqlMetricStore.from_config(database, MetricsConfig()))
    )


class OverCountingStore(SqlMetricStore):
    """Says every point was new, stored before or not: what the suite is there to catch."""

    def write(self, points: Sequence[MetricPoint]) -> int:
        super().write(points)
        return len(points)


def test_the_suite_catches_a_store_that_miscounts_repeated_points(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'driftloop.db'}")
    database.migrate()
    try:
        with pytest.raises(ConformanceError, match=r"counts_new_points.*again counted"):
            check_metric_store(
                MetricStoreSubject(lambda: OverCountingStore.from_config(database, MetricsConfig()))
            )
    finally:
        database.dispose()
