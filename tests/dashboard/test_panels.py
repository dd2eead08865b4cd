"""The serving panels, the class mix and what became of each version, read from the real
store, registry and job queue."""

from __future__ import annotations

import time

import pytest

from dashboard.world import MODEL, REFERENCE, DashboardWorld
from driftloop.pipeline.queue import JobState
from driftloop.registry import PRODUCTION


def test_traffic_latency_errors_and_confidence_per_version(world: DashboardWorld) -> None:
    now = time.time()
    world.register_version(extra_classes=False, accuracy=0.88)
    world.write_serving(now - 100, 200, errors={"5xx": 4, "4xx": 1})
    world.write_serving(now, 100, version="2")
    world.write_serving(now, 100, version="1", shadow=True)  # left out, but for its own line
    traffic, latency, errors, versions = world.data.panels(MODEL, now - 600, now, max_points=60)
    assert traffic.step == latency.step == 10.0
    assert len(traffic.timestamps) == 60
    assert traffic.timestamps[0] == now - 600
    texts, requests = traffic.series
    assert (texts.label, requests.label) == ("texts/s", "requests/s")
    assert texts.values[:29] == [0.0] * 29  # nothing reported before now - 300 ...
    assert set(texts.values[31:]) == {2.0}  # ... then two texts per request, one a second
    assert set(requests.values[31:]) == {1.0}
    assert traffic.summary == {"requests": 300.0, "texts": 600.0}
    assert [s.label for s in latency.series] == ["avg", "max"]
    assert max(v for v in latency.series[1].values if v is not None) == 24.0
    assert latency.summary["p99"] == pytest.approx(24.0, abs=0.5)
    assert [s.label for s in errors.series] == ["4xx errors", "5xx errors"]
    assert errors.summary["errors"] == 5.0
    assert errors.summary["rate"] == pytest.approx(100 * 5 / 305)
    assert errors.series[0].values[0] is None  # no request at all: no rate
    assert [(s.label, s.version) for s in versions.series] == [
        ("v1", "1"),
        ("v2", "2"),
        ("v1 shadow", "1"),
    ]
    served_v2 = [v for v in versions.series[1].values if v is not None]
    assert served_v2 == [pytest.approx(0.85)] * len(served_v2)


def test_the_class_mix_beside_the_production_reference(world: DashboardWorld) -> None:
    now = time.time()
    version = world.register_with_reference()  # its validation split: Food - Positive only
    world.registry.set_alias(MODEL, PRODUCTION, version.version, actor="tester")
    world.write_serving(now, 30, classes=("Food - Negative", "Food - Negative", "Other"))
    mix = world.data.class_mix(MODEL, now - 60, now)
    assert [(c.label, c.count, c.reference_share) for c in mix] == [
        ("Food - Negative", 40, 0.0),
        ("Other", 20, 0.0),
        ("Food - Positive", 0, 1.0),
    ]
    assert mix[0].share == pytest.approx(40 / 60)
    assert REFERENCE.class_mix == {"Food - Positive": 1.0}


def test_what_became_of_each_version(world: DashboardWorld) -> None:
    v1 = world.register_version(extra_classes=False, accuracy=0.88)
    world.registry.set_alias(MODEL, PRODUCTION, v1.version, actor="tester")
    rolled_back_job = world.run_rolled_back_job(None)  # v2: deployed, rolled back
    v3 = world.register_version(extra_classes=True, accuracy=0.95)
    world.registry.set_alias(MODEL, PRODUCTION, v3.version, actor="alice")
    world.registry.rollback(MODEL, actor="bob")  # v3 rolled back by hand, v1 serves again
    rejected = world.jobs.enqueue(MODEL, trigger="manual", force=True).job
    v4 = world.register_version(extra_classes=False, accuracy=0.5)
    world.jobs.set_state(
        rejected.job_id,
        JobState.REJECTED,
        candidate_version=v4.version,
        error="v4 macro F1 0.48 < production 0.86 - 0.01",
    )
    shown = {v.version: v for v in world.data.versions(MODEL)}
    assert [(n, v.status) for n, v in shown.items()] == [
        (4, "rejected"),
        (3, "rolled back"),
        (2, "rolled back"),
        (1, "production"),
    ]
    assert shown[4].status_reason == "v4 macro F1 0.48 < production 0.86 - 0.01"
    assert shown[4].job_id == rejected.job_id
    assert shown[3].status_reason == "rolled back by bob"
    assert shown[3].job_id is None
    assert (shown[2].status_reason or "").startswith("verification failed, rolled back")
    assert shown[2].job_id == rolled_back_job
    assert shown[2].status_at is not None
    assert shown[1].status_reason is None
