"""The whole loop wired from one config (:class:`DriftloopSystem`): the composition root of
``driftloop up``, ``driftloop worker``, ``driftloop retrain`` and the demo.

serving → insights → transport → metric store → monitor engine → notification router
→ @retrain → job queue → worker → pipeline → registry alias → serving (hot swap).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from driftloop.config import Config, MonitorConfig
from driftloop.database import open_database
from driftloop.errors import NotFoundError
from driftloop.metrics.points import (
    SERVED_TAG,
    SHADOW_AGREEMENT,
    SHADOW_CONFIDENCE_GAP,
    SHADOW_CORRECT_GAP,
    SHADOW_TAG,
)
from driftloop.metrics.sql import SqlMetricStore
from driftloop.monitors.engine import MonitorEngine
from driftloop.monitors.events import Event, MonitorState
from driftloop.monitors.outcomes import Outcome, RetrainOutcome, outcome_event
from driftloop.notify import Notifier
from driftloop.notify.router import NotificationRouter
from driftloop.pipeline.queue import Job, JobQueue, JobState
from driftloop.predictors import ReferenceProfile
from driftloop.registry import ModelRegistry
from driftloop.serving.sources import SERVED_ALIASES

if TYPE_CHECKING:  # imported where they are built: the app's parts, the retrain pipeline, the
    # insights pipeline and the control plane; `monitors status` builds only the monitor engine
    # and its notifications, `status` reads the store alone (cli/loop.py)
    from fastapi import FastAPI
    from sqlalchemy.engine import Connection

    from driftloop.insights.client import InsightsClient
    from driftloop.insights.transports import Transport
    from driftloop.leadership import ControlPlane
    from driftloop.monitors.detectors import DriftDetector
    from driftloop.notify.inbound import InboundAlert
    from driftloop.objectstore import DatasetStore
    from driftloop.pipeline.retry import RetryPolicy
    from driftloop.pipeline.runner import PipelineHooks, RetrainPipeline
    from driftloop.pipeline.verification import PairedEvidence
    from driftloop.pipeline.worker import RetrainWorker
    from driftloop.serving.feedback import FeedbackStore
    from driftloop.serving.keys import ApiKeyStore

logger = logging.getLogger("driftloop")

_OUTCOMES: dict[JobState, Outcome] = {
    JobState.REJECTED: "rejected",
    JobState.FAILED: "failed",
    JobState.ROLLED_BACK: "rolled_back",
    JobState.SUCCEEDED: "succeeded",
}
"""The final job states whose outcome is notified (a cancelled job is not)."""


@dataclass
class SystemOptions:
    """What the demo and tests change; production runs on the defaults."""

    clock: Callable[[], float] = time.time
    monitor_interval: float = 5.0
    worker_poll_interval: float = 1.0
    notifiers: Mapping[str, Notifier] | None = None
    event_listeners: list[Callable[[Event], None]] = field(default_factory=list)
    pipeline_hooks: PipelineHooks | None = None


class DriftloopSystem:
    """Every component of the loop, built once from the config and shared."""

    def __init__(self, config: Config, options: SystemOptions | None = None) -> None:
        self.config = config
        self.options = options or SystemOptions()
        clock = self.options.clock
        self.database = open_database(config.store, base_dir=config.base_dir)
        self.registry = ModelRegistry.from_config(config)
        self.metric_store = SqlMetricStore.from_config(self.database, config.metrics)
        self.queue = JobQueue(self.database, cooldown=config.pipeline.cooldown, clock=clock)
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        """This process in the control plane's leases and as the retrain worker's name."""
        self.worker_queue = JobQueue(self.database, cooldown=config.pipeline.cooldown, clock=clock)
        """The queue of the retrain worker and its pipeline: fenced while this process runs
        the control plane (:meth:`start_background`); :attr:`queue` serves the API."""
        self.control: ControlPlane | None = None
        self.router = NotificationRouter(
            config,
            self.database,
            notifiers=self.options.notifiers,
            enqueue_retrain=self.enqueue_retrain,
            metric_store=self.metric_store,
            clock=clock,
        )
        self.monitor_engine = MonitorEngine(
            config,
            self.database,
            self.metric_store,
            clock=clock,
            listeners=[self.router, *self.options.event_listeners],
            reference_provider=self.reference_for,
            detector_factory=self.build_detector,
            served_versions=self.served_versions,
            on_persist=self._record_evaluation,
        )
        self._references: dict[tuple[str, int], ReferenceProfile | None] = {}

    # ------------------------------------------------------------------ built on first use
    # (the app, the insights pipeline and the retrain worker; `monitors status` needs none)
    @cached_property
    def datasets(self) -> DatasetStore:
        from driftloop.objectstore import DatasetStore

        return DatasetStore.from_config(self.config)

    @cached_property
    def transport(self) -> Transport:
        from driftloop.insights.transports import open_transport

        return open_transport(self.config, store=self.metric_store)

    @cached_property
    def insights(self) -> InsightsClient:
        from driftloop.insights.client import InsightsClient

        return InsightsClient.from_config(self.config, transport=self.transport)

    @cached_property
    def api_keys(self) -> ApiKeyStore:
        from driftloop.serving.keys import ApiKeyStore

        return ApiKeyStore(self.database)

    @cached_property
    def feedback(self) -> FeedbackStore:
        from driftloop.serving.feedback import FeedbackStore

        return FeedbackStore(self.database)

    @cached_property
    def pipeline(self) -> RetrainPipeline:
        from driftloop.pipeline.runner import RetrainPipeline

        return RetrainPipeline(
            self.config,
            self.worker_queue,
            self.registry,
            self.datasets,
            health=self,
            incidents=self.monitor_engine,
            hooks=self.options.pipeline_hooks,
            clock=self.options.clock,
            feedback=self.feedback.labeled_samples,
            on_finished=self.notify_retrain_outcome,
        )

    @cached_property
    def retries(self) -> RetryPolicy:
        from driftloop.pipeline.retry import RetryPolicy

        return RetryPolicy(
            self.config.pipeline,
            self.worker_queue,
            self.monitor_engine.incidents,
            models=self.config.models,
            datasets=self.datasets,
            clock=self.options.clock,
        )

    @cached_property
    def worker(self) -> RetrainWorker:
        """The retrain worker (a new one each time this process leads the worker role)."""
        return self._new_worker()

    # ------------------------------------------------------------------ the loop's joints
    @property
    def engine(self) -> MonitorEngine:
        """The old name of :attr:`monitor_engine` (``engine`` alone could be the database's)."""
        return self.monitor_engine

    def enqueue_retrain(self, model: str, incident_id: str | None, reason: str) -> str:
        """What ``@retrain`` and inbound alerts call: one job per incident (storm control)."""
        result = self.queue.enqueue(
            model,
            incident_id=incident_id,
            reason=reason,
            trigger=f"incident:{incident_id}" if incident_id else "alert",
        )
        if not result.created and result.job.state.finished:
            self._note_cooldown(model, incident_id, result.job)
        else:
            logger.info(
                "retrain of %s: %s job %s (incident %s, %s)",
                model,
                "queued" if result.created else f"attached to the {result.job.state.value}",
                result.job.job_id[:8],
                incident_id or "none",
                reason,
            )
        if not result.job.state.finished and incident_id is not None:
            verb = "queued" if result.created else "attached to"
            self.monitor_engine.add_timeline_entry(
                incident_id,
                "retrain",
                f"{verb} retrain job {result.job.job_id[:8]}",
                {"job_id": result.job.job_id, "created": result.created},
            )
        return result.job.job_id

    def notify_retrain_outcome(self, job: Job) -> None:
        """Route how an incident's retrain job ended (rejected, failed, rolled back,
        succeeded) through its monitor's handles, like a transition (not to ``@retrain``)."""
        outcome = _OUTCOMES.get(job.state)
        if outcome is None or job.incident_id is None:
            return
        incident = self.monitor_engine.incidents.get_incident(job.incident_id)
        template = self.monitor_engine.templates.get(incident.monitor) if incident.monitor else None
        event = outcome_event(
            RetrainOutcome(
                outcome=outcome,
                job_id=job.job_id,
                model=job.model,
                incident_id=job.incident_id,
                job_url=f"{self.config.public_url.rstrip('/')}/v1/jobs/{job.job_id}",
                candidate_version=job.candidate_version,
                previous_version=job.previous_version,
                error=job.error,
                gate=job.result.gate,
            ),
            incident,
            template,
            now=self.options.clock(),
            excluded_handles={
                "retrain",
                *(
                    name
                    for name, notifier in self.config.notifiers.items()
                    if notifier.type == "retrain"
                ),
            },
        )
        self.router(event)

    def _note_cooldown(self, model: str, incident_id: str | None, job: Job) -> None:
        """An ``@retrain`` that started nothing: the model's last job finished within the
        cooldown (or it was this incident's job). Logged, and shown on the incident with the
        time the cooldown ends."""
        ends_at = (job.finished_at or self.options.clock()) + self.queue.cooldown
        when = datetime.fromtimestamp(ends_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        message = (
            f"retrain of {model} not started: retrain job {job.job_id[:8]} finished "
            f"({job.state.value}); the cooldown ends at {when}"
        )
        if ends_at <= self.options.clock():
            message = (
                f"retrain of {model} not started: this incident's retrain job "
                f"{job.job_id[:8]} already finished ({job.state.value}); another try "
                "is the retry policy's to start"
            )
        logger.warning("%s (incident %s)", message, incident_id or "none")
        if incident_id is not None:
            # a "retrain" entry: the retry policy follows it
            self.monitor_engine.add_timeline_entry(
                incident_id,
                "retrain",
                message,
                {
                    "job_id": job.job_id,
                    "created": False,
                    "job_state": job.state.value,
                    "cooldown_ends_at": ends_at,
                },
            )

    def handle_inbound_alert(self, alert: InboundAlert) -> str:
        """An alert from Datadog or Alertmanager: an incident (one per alert cycle) and, while
        it fires, a retrain of its model."""
        if alert.model not in self.config.models:
            raise NotFoundError(f"no model {alert.model!r}; known: {sorted(self.config.models)}")
        incident_id = self.monitor_engine.incidents.open_external_incident(
            alert.source,
            alert.model,
            alert.title,
            {"labels": dict(alert.labels), "status": alert.status, "url": alert.url},
            dedupe_key=alert.key,
        )
        if alert.status == "firing":
            self.enqueue_retrain(alert.model, incident_id, f"{alert.source} alert: {alert.title}")
        else:
            self.monitor_engine.add_timeline_entry(
                incident_id,
                "resolved_at_source",
                f"{alert.source} reports the alert resolved",
                {"labels": dict(alert.labels)},
            )
        return incident_id

    @staticmethod
    def build_detector(monitor: MonitorConfig, reference: ReferenceProfile | None) -> DriftDetector:
        from driftloop.drift.factory import build_detector

        assert monitor.detector is not None  # the config requires it for drift monitors
        return build_detector(monitor.detector, reference, metric=monitor.metric)

    def reference_for(self, group: Mapping[str, str]) -> ReferenceProfile | None:
        """The validation profile drift is measured against: that of the group's ``version``
        when monitors group by it (so each version is judged against its own reference, and
        points still in flight from the previous version never reach the new one's detector),
        else that of the production version."""
        model = group.get("model")
        if model is None:
            return None
        try:
            if group.get("version", "").isascii() and group.get("version", "").isdigit():
                version = self.registry.get_version(model, int(group["version"]))
            else:
                version = self.registry.resolve(model, "production")
        except NotFoundError:
            return None
        key = (model, version.version)
        if key not in self._references:
            self._references[key] = version.reference
        return self._references[key]

    def monitors_ok(self, model: str) -> bool:
        """Every monitor group of the model now serving is OK (the verification question).

        Groups split by ``version`` count only for the production version (an older version's
        groups are retired once no alias serves it), and monitors that watch a shadow version
        (their filter names ``shadow``) do not count: production's traffic is the question.
        """
        try:
            production = str(self.registry.resolve(model, "production").version)
        except NotFoundError:
            production = None
        states = [
            group.state
            for status in self.monitor_engine.status()
            if SHADOW_TAG not in self.monitor_engine.monitors[status.name].filter
            for group in status.groups
            if group.group.get("model") == model
            and group.group.get("version", production) == production
        ]
        return bool(states) and all(state == MonitorState.OK for state in states)

    def served_versions(self, model: str) -> set[str] | None:
        """The versions of ``model`` that servers load now (production, and a canary or shadow
        during a rollout), as ``version`` tag values, plus the version a running retrain job
        may roll back to; None for a model with none. What is served is what the aliases name
        (a server that could not load a new version serves the old one a little longer)."""
        served = {
            str(version)
            for alias, version in self.registry.aliases(model).items()
            if alias in SERVED_ALIASES
        }
        if served:
            job = self.queue.active(model)
            if job is not None and job.previous_version is not None:
                served.add(str(job.previous_version))
        return served or None

    def live_confidence(
        self, model: str, version: int, start: float, end: float
    ) -> tuple[float | None, int]:
        if end <= start:  # verification asks at the very instant of the deploy
            return None, 0
        results = self.metric_store.query(
            "model_confidence",
            "avg",
            start,
            end,
            filter={"model": model, "version": str(version), SHADOW_TAG: None},
        )
        if not results:
            return None, 0
        return results[0].value, results[0].count

    def shadow_pairs(
        self, model: str, *, shadow_version: int, served_version: int, start: float, end: float
    ) -> PairedEvidence:
        """The shadow pairs of ``shadow_version`` against ``served_version`` over a time range,
        as shadow minus served."""
        from driftloop.pipeline.verification import PairedEvidence

        tags = {
            "model": model,
            "version": str(shadow_version),
            SHADOW_TAG: "true",
            SERVED_TAG: str(served_version),
        }

        def values(metric: str) -> NDArray[np.float64]:
            if end <= start:
                return np.zeros(0, dtype=np.float64)
            points = self.metric_store.points(metric, start, end, filter=tags)
            return np.fromiter((p.value for p in points), dtype=np.float64, count=len(points))

        return PairedEvidence(
            values(SHADOW_CONFIDENCE_GAP), values(SHADOW_CORRECT_GAP), values(SHADOW_AGREEMENT)
        )

    def reported_values(
        self, model: str, version: int, metric: str, start: float, end: float
    ) -> NDArray[np.float64]:
        """What a version reported of ``metric`` over a time range (not as a shadow): the
        verification of a model served elsewhere (``models.<name>.deploy``)."""
        if end <= start:
            return np.zeros(0, dtype=np.float64)
        tags = {"model": model, "version": str(version), SHADOW_TAG: None}
        points = self.metric_store.points(metric, start, end, filter=tags)
        return np.fromiter((p.value for p in points), dtype=np.float64, count=len(points))

    # ------------------------------------------------------------------ the app
    def create_app(self, *, poll: bool = True) -> FastAPI:
        """The whole HTTP app of ``driftloop up``: serving, the admin API, the inbound hooks,
        the dashboard and candidate uploads (:func:`driftloop.system.app.build_app`)."""
        from driftloop.system.app import build_app

        return build_app(self, poll=poll)

    def enqueue_retrain_manual(self, model: str, reason: str) -> str:
        if model not in self.config.models:
            raise NotFoundError(f"model {model!r} is not configured")
        return self.queue.enqueue(
            model, reason=reason or "manual", trigger="manual", force=True
        ).job.job_id

    # ------------------------------------------------------------------ background work
    def start_background(
        self, *, worker: bool = True, monitors: bool = True, insights: bool = True
    ) -> None:
        """Join the control plane and start the insights pipeline: this process leads the
        ``monitors`` role (evaluation, notifications) and, with ``worker``, the ``worker`` role
        (retrain jobs) while it holds their leases, and keeps trying while another process
        does. From here on its control-plane writes are fenced. On SQLite a second process
        for a role raises :class:`~driftloop.leadership.ControlProcessLockedError`."""
        from driftloop.leadership import ControlPlane, Role

        roles: list[Role] = []
        if monitors:
            roles.append(Role("monitors", self._lead_monitors, self._stop_monitors))
        if worker:
            roles.append(
                Role(
                    "worker", self._lead_worker, self._stop_worker, on_acquired=self._take_over_jobs
                )
            )
        control = ControlPlane(
            self.database,
            roles,
            holder=self.process_id,
            lease_duration=self.config.control.lease_duration,
            renew_interval=self.config.control.renew_interval,
        )
        self.control = control
        self.router.fence = control.fence("monitors", "worker")  # outcomes come from jobs
        self.worker_queue.fence = control.fence("worker")
        control.start()
        if insights:
            self.insights.start()

    def stop_background(self) -> None:
        control, self.control = self.control, None
        if control is not None:
            control.stop()
        if "insights" in self.__dict__:  # built (by the app or start_background): close it
            self.insights.close()

    def _record_evaluation(self, connection: Connection, events: Sequence[Event]) -> None:
        """In the transaction that stores an evaluation: the monitors role's fence, then the
        events for the router (replayed by whichever process leads next)."""
        if self.control is not None:
            self.control.fence("monitors")(connection)
        self.router.record_events(connection, events)

    def _lead_monitors(self) -> None:
        self.monitor_engine.forget_detectors()
        self.router.start()
        self.monitor_engine.start(self.options.monitor_interval)

    def _stop_monitors(self) -> None:
        self.monitor_engine.stop()
        self.router.stop()

    def _new_worker(self) -> RetrainWorker:
        from driftloop.pipeline.worker import RetrainWorker

        return RetrainWorker(
            self.worker_queue,
            self.pipeline,
            name=self.process_id,
            poll_interval=self.options.worker_poll_interval,
            stale_after=self.config.pipeline.worker_stale_after,
            retries=self.retries,
        )

    def _lead_worker(self) -> None:
        self.worker = self._new_worker()  # a stopped worker's thread does not start again
        self.worker.start()

    def _stop_worker(self) -> None:
        self.worker.stop()

    def _take_over_jobs(self, connection: Connection, previous: str | None) -> None:
        """The new worker leader's first act, with the lease: the jobs of the worker it took
        over from are claimable at once (that worker's writes are refused from now on)."""
        if previous is not None:
            released = self.worker_queue.release_worker_jobs(connection, previous)
            if released:
                logger.info("taking over %d retrain job(s) of %s", released, previous)

    def describe(self) -> dict[str, Any]:
        return {
            "store": self.database.safe_url,
            "storage": self.config.storage,
            "transport": self.config.transport,
            "models": sorted(self.config.models),
            "monitors": [m.name for m in self.config.monitors],
        }
