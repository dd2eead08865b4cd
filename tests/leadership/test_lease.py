"""The control plane's lease and its fencing token: one holder at a time, a takeover only
after the expiry, and a deposed leader's writes refused inside their own transaction."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from driftloop.database import Database
from driftloop.leadership import ControlLease, LeaseLostError
from driftloop.pipeline.queue import JobQueue, JobState

LEASE = 0.4


def wait_expiry(lease: ControlLease) -> None:
    current = lease.current()
    assert current is not None
    time.sleep(max(0.0, current.expires_at - time.time()) + 0.05)


def token_of(lease: ControlLease) -> int | None:
    return lease.token


def test_one_holder_and_a_takeover_only_after_the_expiry(database: Database, role: str) -> None:
    first = ControlLease(database, role, "a", duration=LEASE)
    second = ControlLease(database, role, "b", duration=LEASE)
    assert first.acquire()
    assert token_of(first) == 1
    assert not second.acquire()
    assert token_of(second) is None
    assert first.renew()
    wait_expiry(first)
    assert second.acquire()
    assert token_of(second) == 2
    assert not first.renew()
    assert token_of(first) is None  # it learns it was deposed
    holder = second.current()
    assert holder is not None
    assert (holder.holder, holder.token) == ("b", 2)
    second.release()
    assert first.acquire()
    assert token_of(first) == 3


def test_a_deposed_leaders_late_write_is_refused(database: Database, role: str) -> None:
    """The leader of the worker role claims a job; it is deposed (its lease expired while it
    was paused); its successor takes over. Every write the old leader then tries through its
    fenced queue is refused, and the job stays as the new leader left it."""
    old = ControlLease(database, role, "old", duration=LEASE)
    new = ControlLease(database, role, "new", duration=LEASE)
    old_queue = JobQueue(database)
    old_queue.fence = old.fence
    new_queue = JobQueue(database)
    new_queue.fence = new.fence
    assert old.acquire()
    job = JobQueue(database).enqueue(role, reason="test").job
    claimed = old_queue.claim("old", job_id=job.job_id)
    assert claimed is not None
    old_queue.set_state(job.job_id, JobState.TRAINING)

    wait_expiry(old)
    assert new.acquire()
    with pytest.raises(LeaseLostError, match=r"deposed .* by new \(token 2\)"):
        old_queue.set_state(job.job_id, JobState.FAILED, error="late")
    with pytest.raises(LeaseLostError):
        old_queue.heartbeat(job.job_id, "old")
    assert old_queue.get(job.job_id).state == JobState.TRAINING  # nothing landed
    new_queue.set_state(job.job_id, JobState.SUCCEEDED)
    assert new_queue.get(job.job_id).state == JobState.SUCCEEDED
    never_led = JobQueue(database)
    never_led.fence = ControlLease(database, role, "other", duration=LEASE).fence
    with pytest.raises(LeaseLostError, match=f"does not lead the {role} role"):
        never_led.enqueue(f"{role}-2")


def test_on_acquired_runs_in_the_acquiring_transaction(database: Database, role: str) -> None:
    seen: list[str | None] = []
    first = ControlLease(database, role, "a", duration=LEASE)
    second = ControlLease(
        database,
        role,
        "b",
        duration=LEASE,
        on_acquired=lambda connection, previous: seen.append(previous),
    )
    assert first.acquire()
    wait_expiry(first)
    assert second.acquire()
    assert seen == ["a"]


def test_a_takeover_waits_for_the_leaders_write_in_flight(database: Database, role: str) -> None:
    """The fence's shared lock (``FOR SHARE``): a write that passed its fence commits before
    the successor's takeover, which waits on the lease's row, never after it. (SQLite has one
    writer at a time and one control process: the takeover cannot even start.)"""
    old = ControlLease(database, role, "old", duration=LEASE)
    new = ControlLease(database, role, "new", duration=LEASE)
    assert old.acquire()
    took_over = threading.Event()
    wait_expiry(old)
    with database.engine.begin() as connection:
        old.fence(connection)  # passes: nobody took over yet

        def take_over() -> None:
            if new.acquire():
                took_over.set()

        thread = threading.Thread(target=take_over, daemon=True)
        thread.start()
        time.sleep(0.5)
        assert not took_over.is_set()  # held back by the write's transaction
        connection.execute(sa.text("SELECT 1"))
    thread.join(10)
    assert took_over.is_set()
    assert new.token == 2
