"""The relational store's users on both backends (SQLite and, marked ``postgres``, PostgreSQL):
migrations from an empty database, the registry, the job queue and API keys under concurrent
writers, and a small end-to-end loop (monitor alert → incident → retrain job → new version)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa

from driftloop.database import METADATA, Database
from driftloop.errors import AuthError
from driftloop.metrics.points import MetricPoint
from driftloop.monitors.events import MonitorState
from driftloop.objectstore import open_storage
from driftloop.pipeline.queue import JobQueue, JobState
from driftloop.registry import ModelRegistry
from driftloop.serving.keys import ApiKeyStore, Scope
from driftloop.trainers.base import TrainedModel, TrainingData
from driftloop.trainers.sklearn import SklearnParams, SklearnTrainer
from pipeline.world import MODEL, PipelineWorld, ScriptedHealthProbe

T = TypeVar("T")
WRITERS = 6


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a new SQLite file, or a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


@pytest.fixture
def database(store_url: str) -> Iterator[Database]:
    database = Database(store_url)
    database.migrate()
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture(scope="module")
def trained() -> list[TrainedModel]:
    """Distinct small models (one per writer: artifacts are stored by content hash)."""
    from registry.conftest import review_sample

    data = TrainingData(review_sample(12), snapshot_id="s1", snapshot_hash="h1")
    return [SklearnTrainer(SklearnParams(c_grid=[1.0 + i])).fit(data) for i in range(WRITERS)]


def at_once(count: int, action: Callable[[int], T]) -> list[T]:
    """Run ``action(i)`` for ``i < count`` in threads released together by a barrier."""
    barrier = threading.Barrier(count)

    def run(index: int) -> T:
        barrier.wait(timeout=30)
        return action(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_migrations_from_an_empty_database_run_concurrently_and_again(store_url: str) -> None:
    databases = [Database(store_url) for _ in range(WRITERS)]
    try:
        versions = at_once(WRITERS, lambda i: databases[i].migrate())
        assert len(set(versions)) == 1
        assert databases[0].migrate() == versions[0]  # a second run changes nothing
        tables = set(sa.inspect(databases[0].engine).get_table_names())
        assert set(METADATA.tables) <= tables
        with databases[0].engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT version FROM driftloop_schema")).all()
        assert [row[0] for row in rows] == [versions[0]]
    finally:
        for database in databases:
            database.dispose()


def test_registry_numbers_versions_without_gaps_under_concurrent_registrations(
    database: Database, trained: list[TrainedModel], tmp_path: Path
) -> None:
    storage = open_storage(f"file://{tmp_path / 'storage'}")
    registries = [ModelRegistry(database, storage, tmp_path / f"cache-{i}") for i in range(WRITERS)]
    registered = at_once(
        WRITERS,
        lambda i: registries[i].register_trained(
            MODEL, trained[i], trainer="sklearn", trigger=f"writer:{i}"
        ),
    )
    assert sorted(v.version for v in registered) == list(range(1, WRITERS + 1))
    listed = registries[0].list_versions(MODEL)
    assert sorted(v.trigger for v in listed) == sorted(f"writer:{i}" for i in range(WRITERS))
    # alias moves from several writers: the history records each, the alias ends on one
    at_once(
        WRITERS, lambda i: registries[i].set_alias(MODEL, "production", i + 1, actor=f"writer:{i}")
    )
    history = registries[0].alias_history(MODEL)
    assert len(history) == WRITERS
    assert registries[0].resolve(MODEL).version == history[-1].version


def test_the_job_queue_makes_one_job_per_incident_and_each_claim_once(database: Database) -> None:
    queues = [JobQueue(database, cooldown=600) for _ in range(WRITERS)]
    results = at_once(
        WRITERS,
        lambda i: queues[i].enqueue(
            MODEL, incident_id="incident-1", reason=f"alert {i}", trigger="incident:incident-1"
        ),
    )
    assert sum(result.created for result in results) == 1
    assert len({result.job.job_id for result in results}) == 1
    for model in ("a", "b", "c"):
        queues[0].enqueue(model, reason="manual", force=True)
    claims = at_once(WRITERS, lambda i: queues[i].claim(f"worker-{i}"))
    claimed = [job.job_id for job in claims if job is not None]
    assert len(claimed) == 4
    assert len(set(claimed)) == 4
    workers = {job.job_id: f"worker-{i}" for i, job in enumerate(claims) if job is not None}
    assert {job.job_id: job.worker for job in queues[0].list() if job.job_id in workers} == workers


def test_api_keys_created_concurrently_all_authenticate_until_revoked(database: Database) -> None:
    stores = [ApiKeyStore(database, cache_seconds=0) for _ in range(WRITERS)]
    created = at_once(
        WRITERS,
        lambda i: stores[i].create(Scope.ADMIN if i % 2 else Scope.PREDICT, name=f"key-{i}"),
    )
    assert len({c.info.key_id for c in created}) == WRITERS
    for index, key in enumerate(created):
        info = stores[(index + 1) % WRITERS].authenticate(key.key)
        assert info.key_id == key.info.key_id
        assert info.scope == key.info.scope
    at_once(WRITERS, lambda i: stores[i].revoke(created[i].info.key_id))
    assert all(info.revoked for info in stores[0].list())
    with pytest.raises(AuthError):
        stores[0].authenticate(created[0].key)


def test_the_loop_runs_on_the_store(store_url: str, tmp_path: Path) -> None:
    """Low confidence → ALERT → incident → @retrain → one job → a gated, deployed v2."""
    world = PipelineWorld.create(tmp_path, extra={"store": store_url})
    system = world.system
    assert system.database.dialect == ("sqlite" if store_url.startswith("sqlite") else "postgresql")
    world.train_production()
    world.push(world.snapshots.drifted)
    clock = world.clock
    system.metric_store.write(
        [
            MetricPoint(
                "model_confidence",
                0.3,
                clock.now - 30 + i,
                {"model": MODEL, "version": "1"},
                point_id=f"low-{i}",
            )
            for i in range(30)
        ]
    )
    system.engine.evaluate(clock.now)
    [status] = system.engine.status()
    assert status.worst == MonitorState.ALERT
    [incident] = system.engine.list_incidents(status="open")
    [job] = system.queue.list(model=MODEL)
    assert job.incident_id == incident.incident_id
    assert job.state == JobState.QUEUED

    # a second evaluation of the same alert attaches to the job instead of queueing another
    clock.now += 5
    system.engine.evaluate(clock.now)
    assert len(system.queue.list(model=MODEL)) == 1

    claimed = system.queue.claim("worker")
    assert claimed is not None
    health = ScriptedHealthProbe(clock, ok_from=clock.now, confidence={1: 0.3, 2: 0.8})
    finished = world.pipeline(health).run(claimed, "worker")
    assert finished.state == JobState.SUCCEEDED, finished.error
    assert world.production() == 2
    kinds = [kind for kind, _ in world.timeline(incident.incident_id)]
    assert kinds[0] == "opened"
    assert kinds.index("retrain") < kinds.index("deploy") < kinds.index("verified")
