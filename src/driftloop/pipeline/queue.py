"""The durable retrain job queue, with storm control.

One job per incident, until the retry policy (:mod:`driftloop.pipeline.retry`) adds another
after a failed, rejected or rolled-back candidate; at most one unfinished job per model (a
unique index, so a burst of alerts from many processes still yields one job); alerts that
arrive while a job runs, or within the model's cooldown after one, attach to that job instead
of starting another.
"""

from __future__ import annotations

import builtins
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from driftloop.database import Database
from driftloop.errors import ConflictError, NotFoundError
from driftloop.pipeline.results import JobResult
from driftloop.pipeline.tables import job_steps, retrain_jobs
from driftloop.timestamps import iso_utc


class JobState(StrEnum):
    QUEUED = "queued"
    FETCHING_DATA = "fetching_data"
    TRAINING = "training"
    EVALUATING = "evaluating"
    GATED = "gated"
    DEPLOYING = "deploying"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    REJECTED = "rejected"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in FINISHED_STATES


FINISHED_STATES = frozenset(
    {
        JobState.SUCCEEDED,
        JobState.REJECTED,
        JobState.ROLLED_BACK,
        JobState.FAILED,
        JobState.CANCELLED,
    }
)


@dataclass(frozen=True)
class JobStep:
    step: str
    started_at: float
    finished_at: float | None
    outcome: str | None
    log: str


_TIME_FIELDS = ("heartbeat_at", "created_at", "started_at", "finished_at", "deployed_at")
"""The fields of :class:`Job` that are moments: ISO 8601 UTC in :meth:`Job.to_dict`."""


@dataclass(frozen=True)
class Job:
    job_id: str
    model: str
    incident_id: str | None
    state: JobState
    trigger: str
    reason: str
    attached_alerts: int
    snapshot_id: str | None
    previous_version: int | None
    candidate_version: int | None
    result: JobResult
    """What the job recorded as it went (empty until its first record)."""
    error: str | None
    worker: str | None
    heartbeat_at: float | None
    cancel_requested: bool
    created_at: float
    started_at: float | None
    finished_at: float | None
    deployed_at: float | None
    attempt: int = 1
    """1 for the first job of an incident; a retry after a failed, rejected or rolled-back
    candidate counts on."""

    @classmethod
    def from_row(cls, row: sa.Row[Any]) -> Job:
        data = dict(row._mapping)
        data["state"] = JobState(data["state"])
        data.pop("active_model", None)
        data["result"] = JobResult.from_json(data["result"])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        data = {field: getattr(self, field) for field in self.__dataclass_fields__}
        data["state"] = self.state.value
        data["result"] = self.result.to_json() or None
        for field in _TIME_FIELDS:
            data[field] = iso_utc(data[field])
        return data


@dataclass(frozen=True)
class EnqueueResult:
    job: Job
    created: bool
    """False when the alert attached to an existing job (running, or within the cooldown)."""


class JobQueue:
    """Jobs in the store; safe to use from many threads and processes at once."""

    def __init__(
        self, database: Database, *, cooldown: float = 600.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.database = database
        self.cooldown = cooldown
        self.clock = clock
        self.fence: Callable[[Connection], None] | None = None
        """Called first in every write: the control plane's fence on the queue a leading
        worker uses (a deposed worker's late writes are refused)."""

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        with self.database.engine.begin() as connection:
            if self.fence is not None:
                self.fence(connection)
            yield connection

    def release_worker_jobs(self, connection: Connection, worker: str) -> int:
        """Make the unfinished jobs of ``worker`` (a deposed leader) claimable at once, in the
        caller's transaction (the one that takes the lease over); returns how many."""
        released = connection.execute(
            retrain_jobs.update()
            .where(retrain_jobs.c.worker == worker, retrain_jobs.c.active_model.is_not(None))
            .values(heartbeat_at=0.0)
        ).rowcount
        return int(released)

    def enqueue(
        self,
        model: str,
        *,
        incident_id: str | None = None,
        reason: str = "",
        trigger: str = "manual",
        force: bool = False,
        retry_of: Job | None = None,
        result: JobResult | None = None,
    ) -> EnqueueResult:
        """A new job, or the job this alert belongs to (storm control).

        ``force`` (a manual ``driftloop retrain``) skips the cooldown, never the one-active rule.
        ``retry_of`` (the retry policy, after that job of the same incident ended without a
        recovery) makes a new job for the incident, numbered on from it: the backoff it waited
        replaces the cooldown; the one-active rule still holds. ``result`` is recorded with a
        new job (an uploaded candidate's version), before any worker can claim it.
        """
        attempt = 1 if retry_of is None else retry_of.attempt + 1
        for _ in range(5):
            existing = (
                self.active(model)
                if retry_of is not None
                else self._job_to_attach(model, incident_id, force=force)
            )
            if existing is not None:
                self._attach(existing.job_id)
                return EnqueueResult(self.get(existing.job_id), created=False)
            job_id = uuid.uuid4().hex
            try:
                with self._begin() as connection:
                    connection.execute(
                        retrain_jobs.insert().values(
                            job_id=job_id,
                            model=model,
                            incident_id=incident_id,
                            state=JobState.QUEUED.value,
                            active_model=model,
                            trigger=trigger,
                            reason=reason,
                            attached_alerts=1,
                            cancel_requested=False,
                            created_at=self.clock(),
                            attempt=attempt,
                            result=None if result is None else result.to_json() or None,
                        )
                    )
            except SqlIntegrityError:
                continue  # another caller won the race: attach to its job on the next pass
            return EnqueueResult(self.get(job_id), created=True)
        raise ConflictError(f"could not enqueue a retrain job for {model!r} (contention)")

    def _job_to_attach(self, model: str, incident_id: str | None, *, force: bool) -> Job | None:
        with self.database.engine.connect() as connection:
            if incident_id is not None:  # the incident's latest job (retries come later)
                row = connection.execute(
                    sa.select(retrain_jobs)
                    .where(retrain_jobs.c.incident_id == incident_id)
                    .order_by(retrain_jobs.c.created_at.desc())
                    .limit(1)
                ).first()
                if row is not None:
                    return Job.from_row(row)
        active = self.active(model)
        if active is not None or force:
            return active
        with self.database.engine.connect() as connection:
            row = connection.execute(
                sa.select(retrain_jobs)
                .where(retrain_jobs.c.model == model)
                .where(retrain_jobs.c.finished_at >= self.clock() - self.cooldown)
                .where(retrain_jobs.c.state != JobState.CANCELLED.value)
                .order_by(retrain_jobs.c.finished_at.desc())
                .limit(1)
            ).first()
            return None if row is None else Job.from_row(row)

    def active(self, model: str) -> Job | None:
        """The unfinished job of ``model``, if any (there is at most one)."""
        with self.database.engine.connect() as connection:
            row = connection.execute(
                sa.select(retrain_jobs).where(retrain_jobs.c.active_model == model)
            ).first()
        return None if row is None else Job.from_row(row)

    def _attach(self, job_id: str) -> None:
        with self._begin() as connection:
            connection.execute(
                retrain_jobs.update()
                .where(retrain_jobs.c.job_id == job_id)
                .values(attached_alerts=retrain_jobs.c.attached_alerts + 1)
            )

    def get(self, job_id: str) -> Job:
        with self.database.engine.connect() as connection:
            row = connection.execute(
                sa.select(retrain_jobs).where(retrain_jobs.c.job_id == job_id)
            ).first()
        if row is None:
            raise NotFoundError(f"no retrain job {job_id!r}")
        return Job.from_row(row)

    def find(self, prefix: str) -> Job:
        """A job by id or unique id prefix (as the CLI accepts)."""
        with self.database.engine.connect() as connection:
            rows = connection.execute(
                sa.select(retrain_jobs).where(retrain_jobs.c.job_id.startswith(prefix)).limit(2)
            ).all()
        if not rows:
            raise NotFoundError(f"no retrain job {prefix!r}")
        if len(rows) > 1:
            raise ConflictError(f"job id prefix {prefix!r} is ambiguous")
        return Job.from_row(rows[0])

    def list(self, *, model: str | None = None, limit: int = 100) -> list[Job]:
        query = sa.select(retrain_jobs).order_by(retrain_jobs.c.created_at.desc()).limit(limit)
        if model is not None:
            query = query.where(retrain_jobs.c.model == model)
        with self.database.engine.connect() as connection:
            return [Job.from_row(row) for row in connection.execute(query)]

    def count_by_state(self) -> dict[str, int]:
        """How many jobs are in each state (every state, zeros included)."""
        query = sa.select(retrain_jobs.c.state, sa.func.count()).group_by(retrain_jobs.c.state)
        with self.database.engine.connect() as connection:
            counts = {str(row[0]): int(row[1]) for row in connection.execute(query)}
        return {state.value: counts.get(state.value, 0) for state in JobState}

    def steps(self, job_id: str) -> builtins.list[JobStep]:
        with self.database.engine.connect() as connection:
            rows = connection.execute(
                sa.select(job_steps)
                .where(job_steps.c.job_id == job_id)
                .order_by(job_steps.c.step_id)
            ).all()
        return [JobStep(r.step, r.started_at, r.finished_at, r.outcome, r.log) for r in rows]

    def claim(
        self, worker: str, *, stale_after: float = 60.0, job_id: str | None = None
    ) -> Job | None:
        """Take the oldest queued job (or ``job_id`` only), or an unfinished one whose worker
        stopped beating."""
        now = self.clock()
        query = (
            sa.select(retrain_jobs.c.job_id, retrain_jobs.c.state, retrain_jobs.c.heartbeat_at)
            .where(retrain_jobs.c.active_model.is_not(None))
            .order_by(retrain_jobs.c.created_at)
        )
        if job_id is not None:
            query = query.where(retrain_jobs.c.job_id == job_id)
        with self.database.engine.connect() as connection:
            candidates = connection.execute(query).all()
        for candidate_id, state, heartbeat in candidates:
            # a queued job that a worker has claimed carries its heartbeat until the first
            # step: it is no more claimable than a running one
            claimable = heartbeat is None or heartbeat < now - stale_after
            if not claimable:
                continue
            with self._begin() as connection:
                taken = connection.execute(
                    retrain_jobs.update()
                    .where(retrain_jobs.c.job_id == candidate_id)
                    .where(retrain_jobs.c.state == state)
                    .where(
                        retrain_jobs.c.heartbeat_at.is_(None)
                        if heartbeat is None
                        else retrain_jobs.c.heartbeat_at == heartbeat
                    )
                    .values(worker=worker, heartbeat_at=now)
                ).rowcount
            if taken == 1:
                return self.get(candidate_id)
        return None

    def heartbeat(self, job_id: str, worker: str) -> None:
        self._update(job_id, worker=worker, heartbeat_at=self.clock())

    def set_state(self, job_id: str, state: JobState, **values: Any) -> Job:
        self._update(job_id, **self._state_values(job_id, state, values))
        return self.get(job_id)

    def enter_step(
        self,
        job_id: str,
        state: JobState,
        *,
        step: JobState | None = None,
        outcome: str | None = None,
        log: str = "",
        **values: Any,
    ) -> tuple[Job, int]:
        """Move the job to ``state`` and open its step (of the same name, or ``step``) in one
        transaction, so that a worker killed at any moment leaves either neither or both (a
        resumed job then finds the dead worker's step and closes it as interrupted); with an
        ``outcome``, the step is recorded as finished in that same transaction (a decision, such
        as the gate's, that takes no time). Returns the job and the step's id."""
        values = self._state_values(job_id, state, values)
        now = values["heartbeat_at"]
        finished = {} if outcome is None else {"finished_at": now, "outcome": outcome}
        with self._begin() as connection:
            connection.execute(
                retrain_jobs.update().where(retrain_jobs.c.job_id == job_id).values(**values)
            )
            key = connection.execute(
                job_steps.insert().values(
                    job_id=job_id, step=(step or state).value, started_at=now, log=log, **finished
                )
            ).inserted_primary_key
        assert key is not None
        return self.get(job_id), int(key[0])

    def _state_values(self, job_id: str, state: JobState, values: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        values = {"state": state.value, "heartbeat_at": now, **_stored(values)}
        if state.finished:
            values.update(finished_at=now, active_model=None)
        elif state != JobState.QUEUED and self.get(job_id).started_at is None:
            values["started_at"] = now
        return values

    def request_cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.state.finished:
            raise ConflictError(f"job {job_id} already {job.state.value}")
        if job.state == JobState.QUEUED and job.worker is None:
            return self.set_state(job_id, JobState.CANCELLED, error="cancelled before it started")
        self._update(job_id, cancel_requested=True)
        return self.get(job_id)

    def start_step(self, job_id: str, step: str) -> int:
        with self._begin() as connection:
            result = connection.execute(
                job_steps.insert().values(job_id=job_id, step=step, started_at=self.clock(), log="")
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def finish_step(self, step_id: int, outcome: str, log: str) -> None:
        with self._begin() as connection:
            connection.execute(
                job_steps.update()
                .where(job_steps.c.step_id == step_id)
                .values(finished_at=self.clock(), outcome=outcome, log=log)
            )

    def close_open_steps(self, job_id: str, outcome: str = "interrupted") -> int:
        """End the job's unfinished steps with ``outcome`` (a dead worker's step, or the one a
        failure or a cancel cut short); returns how many."""
        with self._begin() as connection:
            closed = connection.execute(
                job_steps.update()
                .where(job_steps.c.job_id == job_id)
                .where(job_steps.c.finished_at.is_(None))
                .values(finished_at=self.clock(), outcome=outcome)
            ).rowcount
        return int(closed)

    def _update(self, job_id: str, **values: Any) -> None:
        values = _stored(values)
        with self._begin() as connection:
            connection.execute(
                retrain_jobs.update().where(retrain_jobs.c.job_id == job_id).values(**values)
            )


def _stored(values: dict[str, Any]) -> dict[str, Any]:
    """Column values as stored: a :class:`JobResult` as its JSON object."""
    result = values.get("result")
    if isinstance(result, JobResult):
        return {**values, "result": result.to_json()}
    return values
