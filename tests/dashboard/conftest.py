"""Fixtures: a real installation (see :mod:`world`), empty or with twenty minutes of history."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.world import CONFIG, MODEL, DashboardWorld
from driftloop.config import parse_config
from driftloop.dashboard import StoreDashboardData
from driftloop.metrics.sql import SqlMetricStore
from driftloop.monitors.engine import MonitorEngine
from driftloop.monitors.events import Event
from driftloop.notify.router import NotificationRouter
from driftloop.pipeline.queue import JobQueue
from driftloop.registry import PRODUCTION, ModelRegistry
from driftloop.serving.keys import ApiKeyStore
from driftloop.storage import open_storage
from driftloop.store import Database


@pytest.fixture
def world(tmp_path: Path) -> Iterator[DashboardWorld]:
    config = parse_config(CONFIG, base_dir=tmp_path, environ={})
    database = Database(config.store, base_dir=tmp_path)
    database.migrate()
    metric_store = SqlMetricStore.from_config(database, config.metrics)
    router = NotificationRouter(config, database, require_routes=False, sleep=lambda _s: None)

    def notify(event: Event) -> None:
        router.dispatch(event)

    engine = MonitorEngine(config, database, metric_store, listeners=[notify])
    registry = ModelRegistry(database, open_storage(config.storage, base_dir=tmp_path),
                             tmp_path / "cache")
    jobs = JobQueue(database, cooldown=0.0)
    data = StoreDashboardData(database=database, metric_store=metric_store,
                              monitors=config.monitors, registry=registry, jobs=jobs,
                              models=sorted(config.models))
    built = DashboardWorld(tmp_path, config, database, metric_store, engine, router, registry,
                           jobs, ApiKeyStore(database), data)
    try:
        yield built
    finally:
        router.close()
        database.dispose()


@pytest.fixture
def lived_world(world: DashboardWorld) -> DashboardWorld:
    """Fifty minutes of history: healthy traffic on v1, then a drop (WARN, then ALERT) that the
    monitor sees as it happens, then a retrain job that deploys v2 (now)."""
    now = time.time()
    v1 = world.register_version(extra_classes=False, accuracy=0.88)
    world.registry.set_alias(MODEL, PRODUCTION, v1.version, actor="tester")
    t0 = now - 3000
    world.write_confidence([0.92 + 0.01 * (i % 3) for i in range(1200)], end=t0 + 2400,
                           spacing=2)
    world.write_confidence([0.74] * 120, end=t0 + 2640, spacing=2)
    world.write_confidence([0.55] * 120, end=t0 + 2880, spacing=2)
    for moment in (2400, 2440, 2560, 2680, 2880):
        world.evaluate(t0 + moment)
    incident_id = next(e.incident_id for e in world.events if e.incident_id)
    world.run_retrain_job(incident_id)
    return world
