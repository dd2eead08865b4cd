"""The durable job queue: storm control, claiming, resuming and cancelling."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from driftloop.database import Database
from driftloop.errors import ConflictError, NotFoundError
from driftloop.pipeline.queue import JobQueue, JobState
from driftloop.testing.clock import ManualClock


@pytest.fixture
def database(tmp_path: Path) -> Database:
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.migrate()
    return db


def test_burst_of_100_alerts_makes_exactly_one_job(database: Database) -> None:
    queue = JobQueue(database)

    def alert(i: int) -> tuple[str, bool]:
        result = queue.enqueue("review-classifier", incident_id=f"inc-{i % 3}", reason="alert")
        return result.job.job_id, result.created

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(alert, range(100)))
    job_ids = {job_id for job_id, _ in outcomes}
    assert len(job_ids) == 1
    assert sum(created for _, created in outcomes) == 1
    jobs = queue.list()
    assert len(jobs) == 1
    assert jobs[0].attached_alerts == 100


def test_same_incident_attaches_even_after_finish(database: Database) -> None:
    clock = ManualClock()
    queue = JobQueue(database, cooldown=0, clock=clock)
    first = queue.enqueue("m", incident_id="inc-1").job
    queue.set_state(first.job_id, JobState.SUCCEEDED)
    clock.now += 10_000
    again = queue.enqueue("m", incident_id="inc-1")
    assert not again.created
    assert again.job.job_id == first.job_id


def test_cooldown_per_model(database: Database) -> None:
    clock = ManualClock()
    queue = JobQueue(database, cooldown=600, clock=clock)
    first = queue.enqueue("m", incident_id="a").job
    queue.set_state(first.job_id, JobState.FAILED, error="x")
    clock.now += 100
    within = queue.enqueue("m", incident_id="b")
    assert not within.created
    assert within.job.job_id == first.job_id
    other_model = queue.enqueue("other", incident_id="c")
    assert other_model.created
    forced = queue.enqueue("m", reason="manual", force=True)
    assert forced.created
    queue.set_state(forced.job.job_id, JobState.SUCCEEDED)
    clock.now += 601
    assert queue.enqueue("m", incident_id="d").created


def test_claim_once_then_resume_stale(database: Database) -> None:
    clock = ManualClock()
    queue = JobQueue(database, clock=clock)
    job = queue.enqueue("m").job
    claimed = queue.claim("w1")
    assert claimed is not None
    assert claimed.job_id == job.job_id
    queue.set_state(job.job_id, JobState.TRAINING, worker="w1")
    assert queue.claim("w2", stale_after=60) is None  # w1 is alive
    clock.now += 61  # w1 was killed: no heartbeat since
    resumed = queue.claim("w2", stale_after=60)
    assert resumed is not None
    assert resumed.state == JobState.TRAINING
    assert resumed.worker == "w2"


def test_finished_job_frees_the_model(database: Database) -> None:
    queue = JobQueue(database, cooldown=0)
    job = queue.enqueue("m").job
    queue.set_state(job.job_id, JobState.REJECTED)
    assert queue.claim("w") is None
    assert queue.enqueue("m").created


def test_steps_are_recorded(database: Database) -> None:
    queue = JobQueue(database)
    job = queue.enqueue("m").job
    step = queue.start_step(job.job_id, "training")
    queue.finish_step(step, "ok", "trained")
    [recorded] = queue.steps(job.job_id)
    assert (recorded.step, recorded.outcome, recorded.log) == ("training", "ok", "trained")
    assert recorded.finished_at is not None


def test_cancel(database: Database) -> None:
    queue = JobQueue(database)
    job = queue.enqueue("m").job
    assert queue.request_cancel(job.job_id).state == JobState.CANCELLED
    with pytest.raises(ConflictError):
        queue.request_cancel(job.job_id)
    running = queue.enqueue("m").job
    queue.set_state(running.job_id, JobState.TRAINING)
    assert queue.request_cancel(running.job_id).cancel_requested


def test_lookup_errors(database: Database) -> None:
    queue = JobQueue(database)
    with pytest.raises(NotFoundError):
        queue.get("nope")
    job = queue.enqueue("m").job
    assert queue.find(job.job_id[:6]).job_id == job.job_id


def test_claim_a_specific_job(database: Database) -> None:
    queue = JobQueue(database, cooldown=0)
    first = queue.enqueue("a").job
    second = queue.enqueue("b").job
    claimed = queue.claim("w", job_id=second.job_id)
    assert claimed is not None
    assert claimed.job_id == second.job_id
    assert queue.claim("w2", job_id=second.job_id) is None
    oldest = queue.claim("w3")
    assert oldest is not None
    assert oldest.job_id == first.job_id
