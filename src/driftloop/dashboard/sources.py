""":class:`StoreDashboardData`: the dashboard's data read from the real components.

Metric series come from the :class:`~driftloop.metrics.points.MetricStore`; monitor states,
events and incidents from the monitor engine's tables; versions, aliases and deploys from the
:class:`~driftloop.registry.ModelRegistry`; retrain jobs from the
:class:`~driftloop.pipeline.queue.JobQueue`; notifications from the router's delivery log.
Everything is read-only. The activity feed is read by :mod:`driftloop.dashboard.activity`,
each version's live accuracy by :mod:`driftloop.dashboard.accuracy`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import sqlalchemy as sa

from driftloop.config import Config, MonitorConfig
from driftloop.dashboard import activity as feed
from driftloop.dashboard import panels as serving
from driftloop.dashboard.accuracy import LiveAccuracyReader
from driftloop.dashboard.data import (
    ActivityEvent,
    ChartMark,
    ChartPoint,
    ClassShare,
    IncidentRecord,
    JobRecord,
    JobStepRecord,
    MarkKind,
    MetricChart,
    ModelSummary,
    MonitorStatus,
    ServingPanel,
    VersionAccuracy,
    VersionRecord,
    worst_state,
)
from driftloop.database import Database
from driftloop.errors import InvalidInputError
from driftloop.metrics.points import MetricStore, TagFilter
from driftloop.monitors.events import MonitorState
from driftloop.monitors.history import MonitorStateStore
from driftloop.monitors.incidents import IncidentStatus, IncidentStore
from driftloop.monitors.series import series_filter
from driftloop.monitors.tables import monitor_events
from driftloop.monitors.thresholds import (
    reference_value,
    resolve_thresholds,
)
from driftloop.monitors.timeline import TimelineEntry
from driftloop.pipeline.queue import Job, JobQueue, JobState
from driftloop.predictors import Evaluation
from driftloop.registry import PRODUCTION, ModelRegistry

MAX_CHART_POINTS = 100_000
_INCIDENT_LIMIT = 100


def _watches(monitor: MonitorConfig, model: str) -> bool:
    """Whether a monitor says something about ``model``."""
    pinned = monitor.filter.get("model")
    if pinned is not None:
        return pinned == model
    return True


class StoreDashboardData:
    """:class:`~driftloop.dashboard.data.DashboardData` on the store, registry and job queue."""

    def __init__(
        self,
        *,
        database: Database,
        metric_store: MetricStore,
        monitors: list[MonitorConfig],
        registry: ModelRegistry | None = None,
        jobs: JobQueue | None = None,
        models: list[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.metric_store = metric_store
        self.monitors = list(monitors)
        self.registry = registry
        self.job_queue = jobs or JobQueue(database)
        self.configured_models = list(models or [])
        self.clock = clock
        self.state_store = MonitorStateStore(database)
        self.incident_store = IncidentStore(database, clock=clock)
        self.accuracy_reader = LiveAccuracyReader(metric_store, registry)

    @classmethod
    def from_config(cls, config: Config) -> StoreDashboardData:
        """Open the configured store, metric store and registry."""
        from driftloop.database import open_database
        from driftloop.metrics.sql import SqlMetricStore

        database = open_database(config.store, base_dir=config.base_dir)
        return cls(
            database=database,
            metric_store=SqlMetricStore.from_config(database, config.metrics),
            monitors=config.monitors,
            registry=ModelRegistry.from_config(config),
            jobs=JobQueue(database, cooldown=config.pipeline.cooldown),
            models=sorted(config.models),
        )

    # -- DashboardData -----------------------------------------------------------------------

    def now(self) -> float:
        return self.clock()

    def models(self) -> list[ModelSummary]:
        names = set(self.configured_models)
        if self.registry is not None:
            names.update(self.registry.list_models())
        states = self.monitor_states()
        names.update(s.model for s in states if s.model)
        open_counts: dict[str, int] = {}
        for incident in self.incident_store.list_incidents(IncidentStatus.OPEN, limit=1000):
            if incident.model:
                names.add(incident.model)
                open_counts[incident.model] = open_counts.get(incident.model, 0) + 1
        summaries = []
        for name in sorted(names):
            aliases = self.registry.aliases(name) if self.registry is not None else {}
            summaries.append(
                ModelSummary(
                    name=name,
                    production_version=aliases.get(PRODUCTION),
                    aliases=aliases,
                    worst_state=worst_state([s.state for s in states if s.model == name]),
                    open_incidents=open_counts.get(name, 0),
                )
            )
        return summaries

    def monitor_states(self, model: str | None = None) -> list[MonitorStatus]:
        states = sorted(
            self.state_store.load_states().values(), key=lambda s: (s.monitor, s.group_key)
        )
        found = [
            MonitorStatus(
                monitor=s.monitor,
                group=dict(s.group),
                state=str(s.state),
                since=s.since,
                value=s.value,
                threshold=s.threshold,
                last_evaluated=s.last_evaluated,
                incident_id=s.incident_id,
            )
            for s in states
        ]
        if model is None:
            return found
        return [s for s in found if s.model == model or (s.model is None and self._global(s))]

    def _global(self, status: MonitorStatus) -> bool:
        monitor = self._monitor(status.monitor)
        return monitor is not None and "model" not in monitor.group_by

    def _monitor(self, name: str) -> MonitorConfig | None:
        return next((m for m in self.monitors if m.name == name), None)

    def charts(self, model: str, start: float, end: float, *, max_points: int) -> list[MetricChart]:
        if not end > start:
            raise InvalidInputError(f"the time range is empty: start {start} >= end {end}")
        if not 1 <= max_points <= MAX_CHART_POINTS:
            raise InvalidInputError(f"max_points must be within 1..{MAX_CHART_POINTS}")
        step = max(1.0, math.ceil((end - start) / max_points))
        states = self.monitor_states(model)
        marks_by_monitor = self._marks(model, start, end)
        reference_profile = self._production_reference(model)
        charts = []
        for monitor in self.monitors:
            if not _watches(monitor, model):
                continue
            read: dict[str, str | None] = dict(series_filter(monitor))
            if "model" in monitor.group_by or "model" in monitor.filter:
                read["model"] = model
            series = self.metric_store.series(monitor.metric, start, end, step, filter=read)
            reference = reference_value(reference_profile, monitor.metric, monitor.aggregation)
            resolved = resolve_thresholds(monitor, reference)
            direction: Literal["below", "above", "none"] = (
                "below"
                if monitor.below is not None
                else "above"
                if monitor.above is not None
                else "none"
            )
            monitor_state = worst_state([s.state for s in states if s.monitor == monitor.name])
            charts.append(
                MetricChart(
                    monitor=monitor.name,
                    metric=monitor.metric,
                    aggregation=monitor.aggregation,
                    direction=direction,
                    warning=resolved.warning,
                    critical=resolved.critical,
                    state=monitor_state,
                    step=step,
                    points=[ChartPoint(p.timestamp, p.avg, p.min, p.max, p.count) for p in series],
                    marks=marks_by_monitor.get(monitor.name, []) + marks_by_monitor.get("", []),
                )
            )
        return charts

    def _production_reference(self, model: str) -> Any:
        if self.registry is None:
            return None
        aliases = self.registry.aliases(model)
        if PRODUCTION not in aliases:
            return None
        return self.registry.get_version(model, aliases[PRODUCTION]).reference

    def _marks(self, model: str, start: float, end: float) -> dict[str, list[ChartMark]]:
        """Marks per monitor name; ``""`` holds those for every chart (deploys)."""
        marks: dict[str, list[ChartMark]] = {}
        events = self.state_store.list_events(model=model, since=start, limit=feed.ROW_LIMIT)
        for event in reversed(events):
            if event.renotification or event.timestamp >= end:
                continue
            kind: MarkKind = (
                "recovery"
                if event.state == MonitorState.OK
                else "incident"
                if event.state in {MonitorState.WARN, MonitorState.ALERT}
                else "state"
            )
            marks.setdefault(event.monitor, []).append(
                ChartMark(event.timestamp, kind, f"{event.previous}→{event.state}")
            )
        if self.registry is not None:
            for change in self.registry.alias_history(model):
                at = change.changed_at.timestamp()
                if change.alias == PRODUCTION and start <= at < end:
                    label = f"{change.action} v{change.version}"
                    marks.setdefault("", []).append(ChartMark(at, "deploy", label))
        return marks

    def incidents(
        self, model: str | None = None, *, since: float | None = None
    ) -> list[IncidentRecord]:
        records = []
        jobs = self.job_queue.list(model=model, limit=_INCIDENT_LIMIT)
        for listed in self.incident_store.list_incidents(model=model, limit=_INCIDENT_LIMIT):
            recent = (
                since is None
                or listed.opened_at >= since
                or (listed.resolved_at is None or listed.resolved_at >= since)
            )
            if not recent:
                continue
            incident = self.incident_store.get_incident(listed.incident_id)
            changes = [e.data.get("state") for e in incident.timeline if e.kind == "state_change"]
            opened_as = str(changes[0]) if changes and changes[0] else None
            heading = incident.title
            if incident.monitor is not None and incident.source == "monitor":
                where = ", ".join(f"{k}={v}" for k, v in sorted(incident.group.items()))
                heading = f"{incident.monitor} for {where or 'all'}"
            records.append(
                IncidentRecord(
                    incident_id=incident.incident_id,
                    model=incident.model,
                    monitor=incident.monitor,
                    title=incident.title,
                    status=str(incident.status),
                    severity=incident.severity,
                    opened_at=incident.opened_at,
                    resolved_at=incident.resolved_at,
                    timeline=list(incident.timeline),
                    heading=heading,
                    opened_as=opened_as if opened_as != incident.severity else None,
                    job_ids=_incident_jobs(incident.incident_id, incident.timeline, jobs),
                )
            )
        return records

    def versions(self, model: str) -> list[VersionRecord]:
        if self.registry is None:
            return []
        aliases = self.registry.aliases(model)
        fates = self._version_fates(model)
        trained_by = {
            job.candidate_version: job.job_id
            for job in reversed(self.job_queue.list(model=model, limit=_INCIDENT_LIMIT))
            if job.candidate_version is not None
        }
        records = []
        for version in reversed(self.registry.list_versions(model)):
            evaluation = version.evaluation
            status, status_at, reason = fates.get(version.version, ("registered", None, None))
            if aliases.get(PRODUCTION) == version.version:
                status, status_at, reason = "production", None, None
            job_id = trained_by.get(version.version)
            records.append(
                VersionRecord(
                    version=version.version,
                    content_hash=version.content_hash,
                    trainer=version.trainer,
                    trigger=version.trigger,
                    created_at=version.created_at.timestamp(),
                    deployed_at=None
                    if version.deployed_at is None
                    else version.deployed_at.timestamp(),
                    accuracy=evaluation.accuracy if isinstance(evaluation, Evaluation) else None,
                    macro_f1=evaluation.macro_f1 if isinstance(evaluation, Evaluation) else None,
                    ece=evaluation.ece if isinstance(evaluation, Evaluation) else None,
                    aliases=sorted(a for a, v in aliases.items() if v == version.version),
                    status=status,
                    status_at=status_at,
                    status_reason=reason,
                    job_id=job_id,
                    training_code=version.training_code,
                )
            )
        return records

    def _version_fates(self, model: str) -> dict[int, tuple[str, float | None, str | None]]:
        """What last became of each version that left (or never reached) production:
        replaced (``retired``), ``rolled back`` (by its retrain job's verification, or by
        hand) or ``rejected`` by the gate, with when and why."""
        assert self.registry is not None
        found: list[tuple[float, int, str, str | None]] = []
        for change in self.registry.alias_history(model):
            left = change.previous_version
            if change.alias != PRODUCTION or left is None or left == change.version:
                continue
            rolled_back = change.action == "rollback" or change.actor.endswith(" rollback")
            found.append(
                (
                    change.changed_at.timestamp(),
                    left,
                    "rolled back" if rolled_back else "retired",
                    f"rolled back by {change.actor}" if rolled_back else None,
                )
            )
        for job in self.job_queue.list(model=model, limit=_INCIDENT_LIMIT):
            fate = _JOB_FATES.get(job.state)
            if fate is not None and job.candidate_version is not None:
                # after the alias change of the same rollback: the job's reason wins
                at = (job.finished_at or job.created_at) + 1e-6
                found.append((at, job.candidate_version, fate, _job_reason(job)))
        return {
            version: (fate, at, reason)
            for at, version, fate, reason in sorted(found, key=lambda f: f[0])
        }

    def jobs(self, model: str | None = None) -> list[JobRecord]:
        records = []
        for job in self.job_queue.list(model=model, limit=50):
            job_steps = self.job_queue.steps(job.job_id)
            steps = [
                JobStepRecord(s.step, s.started_at, s.finished_at, s.outcome, s.log)
                for s in job_steps
            ]
            records.append(
                JobRecord(
                    job_id=job.job_id,
                    model=job.model,
                    state=job.state.value,
                    incident_id=job.incident_id,
                    trigger=job.trigger,
                    reason=job.reason,
                    candidate_version=job.candidate_version,
                    error=job.error,
                    created_at=job.created_at,
                    finished_at=job.finished_at,
                    steps=steps,
                )
            )
        return records

    def panels(
        self, model: str, start: float, end: float, *, max_points: int
    ) -> list[ServingPanel]:
        if not end > start:
            raise InvalidInputError(f"the time range is empty: start {start} >= end {end}")
        return serving.serving_panels(self.metric_store, model, start, end, max_points=max_points)

    def class_mix(self, model: str, start: float, end: float) -> list[ClassShare]:
        reference = self._production_reference(model)
        return serving.class_mix(
            self.metric_store, model, start, end, None if reference is None else reference.class_mix
        )

    def activity(self, model: str | None, start: float, end: float) -> list[ActivityEvent]:
        found: list[ActivityEvent] = []
        found.extend(feed.state_changes(self.state_store, model, start, end))
        found.extend(feed.notifications(self.database, model, start, end))
        found.extend(feed.incident_activity(self.incidents(model, since=start), start, end))
        found.extend(feed.job_activity(self.jobs(model), start, end))
        found.extend(feed.deploys(self.registry, model, start, end))
        found.sort(key=lambda event: event.timestamp)
        return found

    def first_activity(self, model: str | None = None) -> float | None:
        candidates: list[float] = []
        now = self.clock()
        for monitor in self.monitors:
            if model is not None and not _watches(monitor, model):
                continue
            read: TagFilter = (
                {**series_filter(monitor), "model": model}
                if model is not None and ("model" in monitor.group_by or "model" in monitor.filter)
                else series_filter(monitor)
            )
            first = self.metric_store.earliest(monitor.metric, 0.0, now + 1.0, filter=read)
            if first is not None:
                candidates.append(first)
        with self.database.engine.connect() as connection:
            first_event = connection.execute(
                sa.select(sa.func.min(monitor_events.c.timestamp)).where(
                    sa.true() if model is None else monitor_events.c.model == model
                )
            ).scalar()
        if first_event is not None:
            candidates.append(float(first_event))
        return min(candidates) if candidates else None

    def accuracy(self, model: str, end: float) -> list[VersionAccuracy]:
        return self.accuracy_reader.accuracy(model, end)


def _incident_jobs(
    incident_id: str, timeline: Iterable[TimelineEntry], jobs: list[Job]
) -> list[str]:
    """The retrain jobs an incident asked for (its own) or was attached to (its timeline
    names them), newest first."""
    found = [job.job_id for job in jobs if job.incident_id == incident_id]
    for entry in reversed(list(timeline)):
        job_id = entry.data.get("job_id")
        if isinstance(job_id, str) and job_id not in found:
            found.append(job_id)
    return found


_JOB_FATES = {JobState.ROLLED_BACK: "rolled back", JobState.REJECTED: "rejected"}


def _job_reason(job: Job) -> str:
    """Why a job's candidate did not stay: its error, as ``driftloop jobs show`` prints it."""
    return job.error or f"retrain job {job.job_id[:12]} {job.state.value}"
