"""Fixtures: a real installation (see :mod:`world`), empty or with twenty minutes of history."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboard.world import MODEL, DashboardWorld, open_world
from driftloop.registry import PRODUCTION


@pytest.fixture
def world(tmp_path: Path) -> Iterator[DashboardWorld]:
    with open_world(tmp_path) as built:
        yield built


@pytest.fixture
def lived_world(world: DashboardWorld) -> DashboardWorld:
    """Fifty minutes of history: healthy traffic on v1, then a drop (WARN, then ALERT) that the
    monitor sees as it happens, then a retrain job that deploys v2 (now)."""
    now = time.time()
    v1 = world.register_version(extra_classes=False, accuracy=0.88)
    world.registry.set_alias(MODEL, PRODUCTION, v1.version, actor="tester")
    t0 = now - 3000
    world.write_confidence([0.92 + 0.01 * (i % 3) for i in range(1200)], end=t0 + 2400, spacing=2)
    world.write_confidence([0.74] * 120, end=t0 + 2640, spacing=2)
    world.write_confidence([0.55] * 120, end=t0 + 2880, spacing=2)
    for moment in (2400, 2440, 2560, 2680, 2880):
        world.evaluate(t0 + moment)
    incident_id = next(e.incident_id for e in world.events if e.incident_id)
    world.run_retrain_job(incident_id)
    return world
