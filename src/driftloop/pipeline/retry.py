"""Retries: the loop never stops silently in ALERT.

A retrain job can end without curing its incident: the gate rejected the candidate, the
training failed, verification rolled the candidate back, or the candidate was kept while the
monitors still fire. While the incident that asked for the job stays open, the retry policy
queues a new job for it ``pipeline.retry_backoff`` after the end of its latest job (attempt 2,
3, ...), up to ``pipeline.max_attempts`` jobs per incident. Each step is an entry on the
incident's timeline (``retry_scheduled`` when a job ends, ``retry_waiting`` while it waits for
new data, ``retry`` when the new job is queued, ``retries_exhausted`` when the cap is reached: a
person must take over) and a log line. A job a person cancelled is not retried. An incident
that closes (its monitors recovered, or its version was retired), or whose monitor is back
under its alert level, is not retried either.

A retry must have a chance to do better: a job that failed (a store or a trainer that broke) is
retried as it is, but after a rejected, rolled-back or kept-but-still-firing candidate the
retry waits for labeled data newer than the snapshot that job learned from (a retrain on the
same rows, with the same seed, would make the same model): ``retry_waiting`` says so once, and
the retry is queued when a newer snapshot lands (and the backoff has passed).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from driftloop.config import ModelConfig, PipelineConfig
from driftloop.errors import NotFoundError
from driftloop.monitors.incidents import Incident, IncidentStatus
from driftloop.objectstore import DatasetStore
from driftloop.pipeline.queue import Job, JobQueue, JobState

logger = logging.getLogger("driftloop.pipeline")

REQUEST_KINDS = frozenset({"retrain", "retry"})
"""Timeline entries that tie a retrain job to an incident (``data.job_id``)."""


class IncidentSource(Protocol):
    """What the policy reads and writes of incidents (the monitor engine's incident store)."""

    def list_incidents(
        self,
        status: IncidentStatus | str | None = None,
        model: str | None = None,
        *,
        monitor: str | None = None,
        limit: int = 100,
    ) -> list[Incident]: ...

    def get_incident(self, incident_id: str) -> Incident: ...

    def add_timeline_entry(
        self, incident_id: str, kind: str, message: str, data: Mapping[str, Any] | None = None
    ) -> object: ...


@dataclass(frozen=True)
class RetryOutcome:
    """What one pass did for one incident."""

    incident_id: str
    kind: str
    """``retry_scheduled``, ``retry`` or ``retries_exhausted``."""
    message: str
    job_id: str | None = None


class RetryPolicy:
    def __init__(
        self,
        settings: PipelineConfig,
        queue: JobQueue,
        incidents: IncidentSource,
        *,
        models: Mapping[str, ModelConfig],
        datasets: DatasetStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.incidents = incidents
        self.models = models
        self.datasets = datasets
        """Where newer training data is looked for; ``None``: every due retry runs."""
        self.clock = clock

    def run_once(self) -> list[RetryOutcome]:
        """One pass over the open incidents; returns what it did."""
        outcomes: list[RetryOutcome] = []
        for summary in self.incidents.list_incidents(IncidentStatus.OPEN, limit=1000):
            if summary.model is None or summary.model not in self.models:
                continue
            try:
                outcome = self._consider(self.incidents.get_incident(summary.incident_id))
            except NotFoundError:  # purged between the two reads
                continue
            if outcome is not None:
                outcomes.append(outcome)
        return outcomes

    def _consider(self, incident: Incident) -> RetryOutcome | None:
        """What an open incident's last finished retrain calls for: no retry (attempts
        exhausted), a retry later (backoff), a wait for newer labeled data, or a retry now;
        each noted once per job on the incident's timeline."""
        requested = _requested_jobs(incident)
        if not requested:
            return None  # nobody asked for a retrain on this incident
        try:
            last = self.queue.get(requested[-1])
        except NotFoundError:
            return None
        if not last.state.finished or last.state == JobState.CANCELLED:
            return None
        if incident.severity != "ALERT":
            return None  # the monitor is back under its alert level: nothing asks for a retrain
        noted = {(entry.kind, entry.data.get("after_job")) for entry in incident.timeline}
        settings = self.settings
        attempt = f"{len(requested) + 1} of {settings.max_attempts}"
        if len(requested) >= settings.max_attempts:
            message = (
                f"no retry: {len(requested)} of {settings.max_attempts} retrain jobs "
                f"ran for this incident (pipeline.max_attempts) and it is still open; "
                f"the last one {_outcome(last)}"
            )
            return self._note_once(noted, incident, "retries_exhausted", message, last, warn=True)
        assert last.finished_at is not None
        due = last.finished_at + settings.retry_backoff
        if self.clock() < due:
            message = (
                f"retrain job {last.job_id[:8]} {_outcome(last)}; the incident is still "
                f"open: retry {attempt} at {_iso(due)} unless it closes first"
            )
            return self._note_once(noted, incident, "retry_scheduled", message, last, due=due)
        assert incident.model is not None
        if not self._new_data_since(last):
            message = (
                f"retrain job {last.job_id[:8]} {_outcome(last)} after learning from "
                f"every labeled row there is (snapshot {last.snapshot_id}): retry "
                f"{attempt} waits for newer labeled data"
            )
            return self._note_once(noted, incident, "retry_waiting", message, last)
        return self._enqueue_retry(incident, last, attempt)

    def _enqueue_retry(self, incident: Incident, last: Job, attempt: str) -> RetryOutcome:
        """Queue the retry (or attach to the model's running job) and note it."""
        assert incident.model is not None
        reason = (
            f"retry {attempt} for incident {incident.incident_id}: "
            f"job {last.job_id[:8]} {_outcome(last)}"
        )
        result = self.queue.enqueue(
            incident.model,
            incident_id=incident.incident_id,
            reason=reason,
            trigger=f"retry:{incident.incident_id}",
            retry_of=last,
        )
        verb = "queued" if result.created else "attached to running"
        message = (
            f"{verb} retrain job {result.job.job_id[:8]} (attempt {attempt}) after job "
            f"{last.job_id[:8]} {_outcome(last)}"
        )
        return self._note(
            incident, "retry", message, last, job_id=result.job.job_id, created=result.created
        )

    def _note_once(
        self,
        noted: set[tuple[str, Any]],
        incident: Incident,
        kind: str,
        message: str,
        last: Job,
        *,
        warn: bool = False,
        **data: Any,
    ) -> RetryOutcome | None:
        """:meth:`_note`, unless the incident already holds a ``kind`` entry after ``last``."""
        if (kind, last.job_id) in noted:
            return None
        return self._note(incident, kind, message, last, warn=warn, **data)

    def _new_data_since(self, last: Job) -> bool:
        """Whether a retry could learn from rows ``last`` did not: always after a failure;
        else when a snapshot newer than the one it learned from exists."""
        if last.state == JobState.FAILED or last.snapshot_id is None or self.datasets is None:
            return True
        model = self.models.get(last.model)
        if model is None:
            return False
        try:
            learned = self.datasets.get(model.data, last.snapshot_id)
            newest = self.datasets.newest(model.data)
        except NotFoundError:
            return True
        return newest.order > learned.order

    def _note(
        self,
        incident: Incident,
        kind: str,
        message: str,
        last: Job,
        *,
        warn: bool = False,
        **data: Any,
    ) -> RetryOutcome:
        self.incidents.add_timeline_entry(
            incident.incident_id, kind, message, {"after_job": last.job_id, **data}
        )
        (logger.warning if warn else logger.info)(
            "incident %s %s: %s", incident.incident_id, kind, message
        )
        job_id = data.get("job_id")
        return RetryOutcome(
            incident.incident_id, kind, message, job_id if isinstance(job_id, str) else None
        )


def _requested_jobs(incident: Incident) -> list[str]:
    """The distinct jobs the incident asked for or attached to, in order."""
    found: list[str] = []
    for entry in incident.timeline:
        job_id = entry.data.get("job_id")
        if entry.kind in REQUEST_KINDS and isinstance(job_id, str) and job_id not in found:
            found.append(job_id)
    return found


def _outcome(job: Job) -> str:
    if job.state == JobState.SUCCEEDED:
        return f"kept v{job.candidate_version}, but the monitors still fire"
    return job.state.value + (f" ({job.error})" if job.error else "")


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
