"""What every step of a retrain job shares: the components, the records, the heartbeat.

:class:`JobSteps` holds what a job runs with and writes its record: each step opened with the
job's state in one transaction, closed with its outcome and log; the incident's timeline; the
hooks of the demo's live view. :class:`~driftloop.pipeline.deploy.DeployAndVerify` builds the
deploy and verification on it, :class:`~driftloop.pipeline.runner.RetrainPipeline` the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from driftloop.background import BackgroundLoop
from driftloop.config import Config
from driftloop.errors import DriftloopError, TrainingError
from driftloop.errors import JobCancelledError as JobCancelledError  # the old import path
from driftloop.objectstore import DatasetStore
from driftloop.pipeline.feedback import LabeledSample
from driftloop.pipeline.queue import Job, JobQueue, JobState
from driftloop.pipeline.results import JobResult
from driftloop.pipeline.verification import PairedEvidence
from driftloop.registry import ModelRegistry
from driftloop.trainers.base import ProgressCallback

logger = logging.getLogger("driftloop.pipeline")


class IncidentLog(Protocol):
    """Where the job writes its part of the incident's timeline."""

    def add_timeline_entry(
        self, incident_id: str, kind: str, message: str, data: Mapping[str, Any] | None = None
    ) -> object: ...


class HealthProbe(Protocol):
    """What verification asks about the live model."""

    def monitors_ok(self, model: str) -> bool:
        """True when every monitor of the model is OK (not WARN, ALERT or NO_DATA)."""
        ...

    def live_confidence(
        self, model: str, version: int, start: float, end: float
    ) -> tuple[float | None, int]:
        """Mean served confidence of one version over a time range, and the count."""
        ...

    def shadow_pairs(
        self, model: str, *, shadow_version: int, served_version: int, start: float, end: float
    ) -> PairedEvidence:
        """What ``shadow_version`` made of the requests ``served_version`` answered over a
        time range, as shadow minus served per request."""
        ...


@dataclass
class PipelineHooks:
    """Optional observers: the demo's live view and the notification of a rollback."""

    on_state: Callable[[Job], None] | None = None
    on_notice: Callable[[str, str, Mapping[str, Any]], None] | None = None
    progress: ProgressCallback | None = None
    extra: dict[str, Any] = field(default_factory=dict)


FeedbackSource = Callable[[str], Sequence[LabeledSample]]
"""For a model name, the labeled samples production feedback sent, oldest first."""


class JobSteps:
    """A job's components and its records (the base of the pipeline)."""

    def __init__(
        self,
        config: Config,
        queue: JobQueue,
        registry: ModelRegistry,
        datasets: DatasetStore,
        *,
        health: HealthProbe | None = None,
        incidents: IncidentLog | None = None,
        hooks: PipelineHooks | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        heartbeat_interval: float = 10.0,
        feedback: FeedbackSource | None = None,
        on_finished: Callable[[Job], None] | None = None,
    ) -> None:
        self.config = config
        self.on_finished = on_finished
        """Told of every job that reached its final state (the system notifies its outcome)."""
        self.feedback = feedback
        """Where ``merge_feedback`` models find their labeled production samples."""
        self.queue = queue
        self.registry = registry
        self.datasets = datasets
        self.health = health
        self.incidents = incidents
        self.hooks = hooks or PipelineHooks()
        self.clock = clock
        self.sleep = sleep
        self.heartbeat_interval = heartbeat_interval
        """Seconds between heartbeats during a step; keep it well under the workers'
        ``stale_after`` (60 s by default)."""

    # ----------------------------------------------------------------------------- records
    @contextmanager
    def _step(self, job: Job, state: JobState, worker: str) -> Iterator[list[str]]:
        self._check_cancel(job.job_id)
        entered, step_id = self.queue.enter_step(job.job_id, state, worker=worker)
        self._emit(entered)
        log: list[str] = []
        try:
            with self._beating(job.job_id, worker):
                yield log
        except Exception as exc:
            log.append(f"{type(exc).__name__}: {exc}")
            self.queue.finish_step(step_id, "failed", "\n".join(log))
            if isinstance(exc, DriftloopError):
                raise
            if state == JobState.TRAINING:
                raise TrainingError(f"training failed: {exc}") from exc
            raise
        self.queue.finish_step(step_id, "ok", "\n".join(log))

    @contextmanager
    def _beating(self, job_id: str, worker: str) -> Iterator[None]:
        """Heartbeat while a step runs (a training can take hours), so that no other worker
        takes the job for one whose worker died."""
        # a failed beat (a store blip) must not end the step; the next beat retries
        beating = BackgroundLoop(
            lambda: self.queue.heartbeat(job_id, worker),
            self.heartbeat_interval,
            name=f"driftloop-heartbeat-{job_id[:8]}",
            logger=logger,
            failure=f"heartbeat of job {job_id[:8]} failed",
            failure_level=logging.WARNING,
            wait_first=True,
        )
        beating.start()
        try:
            yield
        finally:
            beating.stop()

    def _check_cancel(self, job_id: str) -> None:
        if self.queue.get(job_id).cancel_requested:
            raise JobCancelledError(f"job {job_id} was cancelled")

    def _finish(self, job_id: str, state: JobState, **values: Any) -> Job:
        return self._finished(self.queue.set_state(job_id, state, **values))

    def _finished(self, job: Job) -> Job:
        """Tell the incident and the hooks that ``job`` reached its final state."""
        self._note(
            job,
            "job",
            f"retrain job {job.state.value}" + (f": {job.error}" if job.error else ""),
            state=job.state.value,
        )
        self._emit(job)
        if self.on_finished is not None:
            try:
                self.on_finished(job)
            except Exception:  # a notification must never undo the job's record
                logger.exception("telling of job %s's outcome failed", job.job_id[:8])
        return job

    def _note(self, job: Job, kind: str, message: str, **data: Any) -> None:
        logger.info(
            "job %s (model %s, incident %s) %s: %s",
            job.job_id[:8],
            job.model,
            job.incident_id or "none",
            kind,
            message,
        )
        if self.incidents is not None and job.incident_id is not None:
            self.incidents.add_timeline_entry(
                job.incident_id, kind, message, {"job_id": job.job_id, **data}
            )

    def _emit(self, job: Job) -> None:
        if self.hooks.on_state is not None:
            self.hooks.on_state(job)

    def _result(self, job: Job, log: list[str]) -> JobResult:
        return self.queue.get(job.job_id).result.with_changes(verification=log)
