"""The dashboard's activity feed: every monitor state change, notification, incident entry,
retrain job step and deploy in a time range, as :class:`ActivityEvent` records (the report's
``events.json`` and its incident timeline)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from driftloop.dashboard.data import ActivityEvent, IncidentRecord, JobRecord
from driftloop.database import Database
from driftloop.monitors.history import MonitorStateStore
from driftloop.notify.tables import notify_deliveries, notify_events
from driftloop.registry import PRODUCTION, ModelRegistry

ROW_LIMIT = 5_000
"""Most state changes and notifications read for one range."""


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


def state_changes(
    state_store: MonitorStateStore, model: str | None, start: float, end: float
) -> list[ActivityEvent]:
    events = state_store.list_events(model=model, since=start, limit=ROW_LIMIT)
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


def notifications(
    database: Database, model: str | None, start: float, end: float
) -> list[ActivityEvent]:
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
        .limit(ROW_LIMIT)
    )
    with database.engine.connect() as connection:
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


def incident_activity(
    incidents: Iterable[IncidentRecord], start: float, end: float
) -> list[ActivityEvent]:
    found: list[ActivityEvent] = []
    for incident in incidents:
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


def job_activity(jobs: Iterable[JobRecord], start: float, end: float) -> list[ActivityEvent]:
    found: list[ActivityEvent] = []
    for job in jobs:
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


def deploys(
    registry: ModelRegistry | None, model: str | None, start: float, end: float
) -> list[ActivityEvent]:
    if registry is None:
        return []
    names = [model] if model is not None else registry.list_models()
    found = []
    for name in names:
        for change in registry.alias_history(name):
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
