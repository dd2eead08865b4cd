""":class:`StoreDashboardData`: the dashboard's data read from the real components.

Metric series come from the :class:`~driftloop.metrics.points.MetricStore`; monitor states,
events and incidents from the monitor engine's tables; versions, aliases and deploys from the
:class:`~driftloop.registry.ModelRegistry`; retrain jobs from the
:class:`~driftloop.pipeline.queue.JobQueue`; notifications from the router's delivery log.
Everything is read-only.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, Literal

import sqlalchemy as sa

from driftloop.config import Config, MonitorConfig
from driftloop.dashboard import panels as serving
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
from driftloop.drift.estimated_accuracy import (
    ESTIMATED_ACCURACY_METRIC,
    reasons_estimate_may_not_hold,
    reference_signals,
)
from driftloop.errors import InvalidInputError, NotFoundError
from driftloop.metrics.points import MetricStore, TagFilter
from driftloop.monitors.events import MonitorState
from driftloop.monitors.history import MonitorStateStore
from driftloop.monitors.incidents import IncidentStatus, IncidentStore
from driftloop.monitors.series import series_filter
from driftloop.monitors.tables import monitor_events
from driftloop.monitors.thresholds import (
    REALIZED_ACCURACY_METRIC,
    reference_value,
    resolve_thresholds,
)
from driftloop.monitors.timeline import TimelineEntry
from driftloop.notify.tables import notify_deliveries, notify_events
from driftloop.pipeline.queue import Job, JobQueue, JobState
from driftloop.predictors import ReferenceProfile
from driftloop.registry import PRODUCTION, ModelRegistry

MAX_CHART_POINTS = 100_000
ESTIMATE_WINDOW = 300.0
"""Seconds of predictions behind a version's estimated accuracy on the dashboard (the default
confidence monitor's window)."""
REALIZED_WINDOW = 3_600.0
"""Seconds of feedback labels behind its realized accuracy (the default accuracy monitor's)."""
HOLDS_SAMPLE = 1_000
"""Newest values per signal the "may not hold" tests read (the last 15 s, 1 min or 5 min,
the first span that holds this many), so a busy server's dashboard reads little."""
_ROW_LIMIT = 5_000
_INCIDENT_LIMIT = 100


def _tags(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    return {str(key): str(value) for key, value in parsed.items()}


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
        events = self.state_store.list_events(model=model, since=start, limit=_ROW_LIMIT)
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
                    accuracy=None if evaluation is None else evaluation.accuracy,
                    macro_f1=None if evaluation is None else evaluation.macro_f1,
                    ece=None if evaluation is None else evaluation.ece,
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
        found.extend(self._state_changes(model, start, end))
        found.extend(self._notifications(model, start, end))
        found.extend(self._incident_activity(model, start, end))
        found.extend(self._job_activity(model, start, end))
        found.extend(self._deploys(model, start, end))
        found.sort(key=lambda event: event.timestamp)
        return found

    def _state_changes(self, model: str | None, start: float, end: float) -> list[ActivityEvent]:
        events = self.state_store.list_events(model=model, since=start, limit=_ROW_LIMIT)
        return [
            ActivityEvent(
                timestamp=event.timestamp,
                kind="state_change",
                model=event.model,
                title=f"{event.monitor}: {event.previous} → {event.state}"
                + (" (renotification)" if event.renotification else ""),
                details={
                    "event_id": event.event_id,
                    "monitor": event.monitor,
                    "group": dict(event.group),
                    "previous": str(event.previous),
                    "state": str(event.state),
                    "value": event.value,
                    "threshold": event.threshold,
                    "incident_id": event.incident_id,
                    "message": event.message,
                    "handles": list(event.handles),
                    "renotification": event.renotification,
                },
            )
            for event in reversed(events)
            if event.timestamp < end
        ]

    def _notifications(self, model: str | None, start: float, end: float) -> list[ActivityEvent]:
        query = (
            sa.select(
                notify_deliveries,
                notify_events.c.monitor,
                notify_events.c.group_json,
                notify_events.c.incident_id,
                notify_events.c.state,
            )
            .join(notify_events, notify_events.c.event_id == notify_deliveries.c.event_id)
            .where(notify_deliveries.c.created_at >= start, notify_deliveries.c.created_at < end)
            .order_by(notify_deliveries.c.created_at)
            .limit(_ROW_LIMIT)
        )
        with self.database.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        found = []
        for row in rows:
            group = _tags(row["group_json"])
            if model is not None and group.get("model") != model:
                continue
            found.append(
                ActivityEvent(
                    timestamp=row["created_at"],
                    kind="notification",
                    model=group.get("model"),
                    title=f"@{row['notifier']} {row['status']} ({row['monitor']} {row['state']})",
                    details={
                        "event_id": row["event_id"],
                        "notifier": row["notifier"],
                        "attempt": row["attempt"],
                        "status": row["status"],
                        "http_status": row["http_status"],
                        "error": row["error"],
                        "incident_id": row["incident_id"],
                        "monitor": row["monitor"],
                        "state": row["state"],
                    },
                )
            )
        return found

    def _incident_activity(
        self, model: str | None, start: float, end: float
    ) -> list[ActivityEvent]:
        found: list[ActivityEvent] = []
        for incident in self.incidents(model, since=start):
            base = {
                "incident_id": incident.incident_id,
                "monitor": incident.monitor,
                "severity": incident.severity,
            }
            if start <= incident.opened_at < end:
                found.append(
                    ActivityEvent(
                        incident.opened_at,
                        "incident_opened",
                        incident.model,
                        f"incident opened: {incident.title}",
                        dict(base),
                    )
                )
            if incident.resolved_at is not None and start <= incident.resolved_at < end:
                found.append(
                    ActivityEvent(
                        incident.resolved_at,
                        "incident_resolved",
                        incident.model,
                        f"incident resolved: {incident.title}",
                        dict(base),
                    )
                )
            for entry in incident.timeline:
                if start <= entry.timestamp < end:
                    found.append(
                        ActivityEvent(
                            entry.timestamp,
                            "incident_entry",
                            incident.model,
                            f"{entry.kind}: {entry.message}",
                            {**base, "entry_kind": entry.kind},
                        )
                    )
        return found

    def _job_activity(self, model: str | None, start: float, end: float) -> list[ActivityEvent]:
        found: list[ActivityEvent] = []
        for job in self.jobs(model):
            base: dict[str, Any] = {"job_id": job.job_id, "incident_id": job.incident_id}
            if start <= job.created_at < end:
                found.append(
                    ActivityEvent(
                        job.created_at,
                        "job",
                        job.model,
                        f"retrain job queued ({job.trigger})",
                        {**base, "state": "queued", "reason": job.reason},
                    )
                )
            if job.finished_at is not None and start <= job.finished_at < end:
                found.append(
                    ActivityEvent(
                        job.finished_at,
                        "job",
                        job.model,
                        f"retrain job {job.state}",
                        {
                            **base,
                            "state": job.state,
                            "error": job.error,
                            "candidate_version": job.candidate_version,
                        },
                    )
                )
            for step in job.steps:
                at = step.finished_at if step.finished_at is not None else step.started_at
                if start <= at < end:
                    found.append(
                        ActivityEvent(
                            at,
                            "job_step",
                            job.model,
                            f"job step {step.step}: {step.outcome or 'running'}",
                            {
                                **base,
                                "step": step.step,
                                "started_at": step.started_at,
                                "finished_at": step.finished_at,
                                "outcome": step.outcome,
                                "log": step.log,
                            },
                        )
                    )
        return found

    def _deploys(self, model: str | None, start: float, end: float) -> list[ActivityEvent]:
        if self.registry is None:
            return []
        names = [model] if model is not None else self.registry.list_models()
        found = []
        for name in names:
            for change in self.registry.alias_history(name):
                at = change.changed_at.timestamp()
                if change.alias != PRODUCTION or not start <= at < end:
                    continue
                found.append(
                    ActivityEvent(
                        at,
                        "deploy",
                        name,
                        f"{change.action}: {name} v{change.version} in production",
                        {
                            "alias": change.alias,
                            "version": change.version,
                            "previous_version": change.previous_version,
                            "action": change.action,
                            "actor": change.actor,
                        },
                    )
                )
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
        estimated = self._per_version(ESTIMATED_ACCURACY_METRIC, model, end - ESTIMATE_WINDOW, end)
        realized = self._per_version(REALIZED_ACCURACY_METRIC, model, end - REALIZED_WINDOW, end)
        found = []
        for version in sorted(set(estimated) | set(realized), key=_version_order, reverse=True):
            reference = self._version_reference(model, version)
            estimate, estimated_n = estimated.get(version, (None, 0))
            labels, realized_n = realized.get(version, (None, 0))
            judged = estimate is not None and reference is not None
            reasons = (
                []
                if not judged or reference is None
                else list(
                    reasons_estimate_may_not_hold(
                        reference,
                        {
                            name: self._recent_values(name, model, version, end)
                            for name in reference_signals(reference)
                        },
                    )
                )
            )
            found.append(
                VersionAccuracy(
                    version=version,
                    reference_accuracy=None
                    if reference is None
                    else reference.metrics.get("accuracy"),
                    estimated=estimate,
                    estimated_n=estimated_n,
                    estimate_holds=not reasons if judged else None,
                    may_not_hold_because=reasons,
                    realized=labels,
                    realized_n=realized_n,
                    estimate_window=ESTIMATE_WINDOW,
                    realized_window=REALIZED_WINDOW,
                )
            )
        return found

    def _per_version(
        self, metric: str, model: str, start: float, end: float
    ) -> dict[str, tuple[float | None, int]]:
        """The ``avg`` of ``metric`` over the served answers of ``model`` (a shadow's left out)
        in the range, and its number of points, by version."""
        results = self.metric_store.query(
            metric, "avg", start, end, filter={"model": model, "shadow": None}, group_by=["version"]
        )
        return {r.group["version"]: (r.value, r.count) for r in results if r.count}

    def _recent_values(self, metric: str, model: str, version: str, end: float) -> list[float]:
        """At least ``HOLDS_SAMPLE`` of the newest raw values of a served version's metric if
        the estimate window has them (fewer at low traffic): what the KS tests compare."""
        read: dict[str, str | None] = {"model": model, "version": version, "shadow": None}
        values: list[float] = []
        for span in (15.0, 60.0, ESTIMATE_WINDOW):
            values = [
                p.value for p in self.metric_store.points(metric, end - span, end, filter=read)
            ]
            if len(values) >= HOLDS_SAMPLE:
                break
        return values

    def _version_reference(self, model: str, version: str) -> ReferenceProfile | None:
        if self.registry is None or not (version.isascii() and version.isdigit()):
            return None
        try:
            return self.registry.get_version(model, int(version)).reference
        except NotFoundError:
            return None


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


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isascii() and version.isdigit() else (-1, version)
