"""A one-minute soak at twice the measured capacity (``make bench`` runs ten minutes:
benchmarks/soak.py), on embedded defaults and on Kafka + PostgreSQL: ``driftloop up`` (and
``driftloop ingest``) as real processes on loopback. Nothing fails but load shedding (503 with
Retry-After), no insight is lost (one ``model_confidence`` point per answered prediction), the
server's memory stays flat after warm-up and answered requests keep a bounded latency."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from driftloop.database import open_database
from driftloop.metrics.sql import SqlMetricStore
from driftloop.testing.soak import SoakResult, run_soak
from reliability.project import MODEL, LoopProcess, ReliabilityProject, free_port

pytestmark = pytest.mark.slow

LOAD_SECONDS = 30.0
MAX_QUEUE_DELAY = 0.5
MAX_RSS_GROWTH = 0.05
P99_BOUND = 10.0
"""Seconds: max_queue_delay, the batch in progress, and a busy client's own scheduling. The
client measures it, so its own waits for a core count: inside the full suite on 2 cores the
Kafka soak measured 5.2 and 6.0 s (standalone 0.85 to 2.9 s); without shedding p99 was 49.9 s."""


def stored_points(project: ReliabilityProject) -> int:
    config = project.config
    store = SqlMetricStore.from_config(
        open_database(config.store, base_dir=config.base_dir), config.metrics
    )
    now = time.time()
    return sum(
        int(result.count)
        for result in store.query(
            "model_confidence", "count", now - 3600, now + 60, filter={"model": MODEL}
        )
    )


def wait_for_points(project: ReliabilityProject, expected: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    stored = stored_points(project)
    while stored < expected and time.monotonic() < deadline:
        time.sleep(1.0)
        stored = stored_points(project)
    return stored


def check(result: SoakResult, stored: int) -> None:
    load = result.load
    windows = load.answered_per_window(5.0, load.offered_seconds)
    report = (
        f"capacity {result.capacity_rps:.0f}/s, target {result.target_rps:.0f}/s, "
        f"offered {result.offered_rps:.0f}/s, "
        f"statuses {dict(load.statuses)}, errors {dict(load.errors)}, "
        f"p50 {load.latency_ms(0.5):.0f} ms, p99 {load.latency_ms(0.99):.0f} ms, "
        f"RSS {result.rss_warm_kib} -> {result.rss_peak_late_kib} KiB, "
        f"answered {result.answered}, stored {stored}, "
        f"answered per 5 s {windows}"
    )
    print(report)
    assert result.capacity_rps > 20, report
    assert not result.unexpected(), report
    # twice the capacity really overloaded the server: it shed a clear share of what it was
    # sent. (What it was sent is no measure of that: the client holds at most 512 requests
    # open, and under overload each waits up to max_queue_delay, so on a fast machine the
    # client, not the server, caps the rate; it counts what it skipped.)
    shed = load.statuses[503]
    assert shed >= 0.1 * load.sent, f"the overload was not shed: {report}"
    # still serving: in every five seconds of the overload at least a tenth of the capacity
    # (no stall, no collapse as the overload goes on; over windows of the time requests were
    # sent, not the wait for the last answers). In the full suite one window fell to 0.43 of
    # it; alone, a two-minute soak never went below 0.65 and did not trend down.
    assert min(windows) >= 0.1 * result.capacity_rps * 5.0, report
    # ... and a good share of the capacity over the whole overload. The capacity was measured
    # before it, with the ingest worker, the broker and the database idle: during it they
    # share the two cores with the server and the client, and the Kafka soak answered 0.47x
    # of it in one full-suite run (no error, p99 within its bound)
    assert load.answered >= 0.3 * result.capacity_rps * load.seconds, report
    # one point per answered prediction; a request the client gave up on (a timeout) may
    # have been answered and reported all the same
    timeouts = sum(phase.errors.get("TimeoutError", 0) for phase in (result.capacity, result.load))
    assert result.answered <= stored <= result.answered + timeouts, (
        f"insights lost or doubled: {report}"
    )
    # bounded (without shedding it grew to tens of seconds); measured by the client, so it
    # holds the client's own waits for a core as well
    assert load.latency_ms(0.99) < 1000 * P99_BOUND, report
    assert result.rss_growth < MAX_RSS_GROWTH, report


def soak(project: ReliabilityProject, server: LoopProcess) -> SoakResult:
    assert server.process is not None
    return run_soak(
        server.url,
        server.process.pid,
        project.headers(),
        MODEL,
        duration=LOAD_SECONDS,
        capacity_seconds=5.0,
    )


def make_project(directory: Path, **backends: object) -> ReliabilityProject:
    return ReliabilityProject.create(
        directory,
        serving={"max_queue_delay": f"{MAX_QUEUE_DELAY}s", "access_log": False},
        **backends,  # type: ignore[arg-type]
    )


@pytest.fixture
def processes() -> Iterator[Callable[[LoopProcess], LoopProcess]]:
    started: list[LoopProcess] = []

    def add(process: LoopProcess) -> LoopProcess:
        started.append(process)
        return process

    yield add
    for process in reversed(started):
        process.stop()


def test_soak_on_embedded_defaults(
    tmp_path: Path, processes: Callable[[LoopProcess], LoopProcess]
) -> None:
    project = make_project(tmp_path / "project")
    server = processes(LoopProcess(project, free_port(), tmp_path / "up.log"))
    server.start()
    result = soak(project, server)
    server.stop()  # SIGTERM: the SDK flushes what it holds
    check(result, wait_for_points(project, result.answered, 30))


@pytest.mark.kafka
@pytest.mark.postgres
def test_soak_on_kafka_and_postgresql(
    tmp_path: Path,
    fresh_postgres_url: str,
    kafka_bootstrap: str,
    processes: Callable[[LoopProcess], LoopProcess],
) -> None:
    topic = f"soak-{uuid.uuid4().hex[:8]}"
    project = make_project(
        tmp_path / "project",
        store=fresh_postgres_url,
        transport=f"kafka://{kafka_bootstrap}/{topic}",
        extra={
            "kafka": {
                "topic_partitions": 2,
                "group_id": f"ingest-{topic}",
                "session_timeout": "6s",
                "heartbeat_interval": "2s",
            }
        },
    )
    ingest = processes(LoopProcess(project, 0, tmp_path / "ingest.log"))
    ingest.start("ingest")
    server = processes(LoopProcess(project, free_port(), tmp_path / "up.log"))
    server.start()
    result = soak(project, server)
    server.stop()
    check(result, wait_for_points(project, result.answered, 60))
