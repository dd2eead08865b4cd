"""Feature-drift monitors (#19 part 5) in the monitor engine on both store backends (SQLite and,
marked ``postgres``, PostgreSQL): ``type: drift`` on ``feature.<name>`` against the reference
profile's per-feature samples, KS on a number and chi-square on a category, OK on traffic like
the reference and ALERT once it moves."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from driftloop.config import MonitorConfig
from driftloop.database import Database
from driftloop.drift.base import DriftDetector
from driftloop.drift.factory import build_detector
from driftloop.metrics.points import MetricPoint
from driftloop.metrics.sql import SqlMetricStore
from driftloop.monitors.engine import MonitorEngine
from driftloop.monitors.events import MonitorState
from driftloop.predictors import Feature, InputSchema, ReferenceProfile
from driftloop.predictors.schema import feature_metrics, feature_references
from driftloop.testing.clock import ManualClock
from driftloop.testing.configs import make_config

T0 = 1_699_999_980.0
PLANS = ("basic", "pro", "team")
SCHEMA = InputSchema.record(Feature.number("tenure"), Feature.category("plan", PLANS))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    url = (
        f"sqlite:///{tmp_path / 'store.db'}"
        if request.param == "sqlite"
        else str(request.getfixturevalue("fresh_postgres_url"))
    )
    database = Database(url)
    database.migrate()
    try:
        yield database
    finally:
        database.dispose()


def records(
    count: int, seed: int, *, tenure: float = 24.0, plans: tuple[float, ...] = (0.6, 0.3, 0.1)
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"tenure": rng.gauss(tenure, 8.0), "plan": rng.choices(PLANS, plans)[0]}
        for _ in range(count)
    ]


def detector(monitor: MonitorConfig, reference: ReferenceProfile | None) -> DriftDetector:
    assert monitor.detector is not None
    return build_detector(monitor.detector, reference, metric=monitor.metric)


def test_feature_monitors_alert_on_a_moved_feature_against_the_reference(
    database: Database,
) -> None:
    numbers, categories = feature_references(SCHEMA, records(1000, seed=1))
    profile = ReferenceProfile([], [], {}, 0.0, inputs=numbers, categories=categories)
    config = make_config(
        monitors=[
            {
                "name": name,
                "type": "drift",
                "metric": f"feature.{feature}",
                "renotify": None,
                "message": f"{feature} moved",
                "filter": {"model": "churn"},
                "detector": {"algorithm": algorithm, "window": 200, "false_alarm_rate": 1e-4},
            }
            for name, feature, algorithm in (
                ("tenure", "tenure", "ks"),
                ("plan", "plan", "chi_square"),
            )
        ]
    )
    clock = ManualClock(T0)
    store = SqlMetricStore(database, raw_retention=86400.0, rollup_retention=30 * 86400.0)
    engine = MonitorEngine(
        config,
        database,
        store,
        clock=clock,
        detector_factory=detector,
        reference_provider=lambda group: profile,
    )

    def serve(rows: list[dict[str, Any]]) -> dict[str, MonitorState]:
        start = clock.now
        store.write(
            [
                MetricPoint(name, value, start + i * 0.01, {"model": "churn"})
                for i, row in enumerate(rows)
                for name, value in feature_metrics(SCHEMA, row).items()
            ]
        )
        clock.now = start + 60
        engine.evaluate()
        return {
            status.name: status.groups[0].state
            for status in (engine.status("tenure")[0], engine.status("plan")[0])
        }

    clock.now = T0 - 60
    assert serve(records(400, seed=2)) == {"tenure": MonitorState.OK, "plan": MonitorState.OK}
    moved = serve(records(400, seed=3, tenure=36.0, plans=(0.2, 0.4, 0.4)))
    assert moved == {"tenure": MonitorState.ALERT, "plan": MonitorState.ALERT}
