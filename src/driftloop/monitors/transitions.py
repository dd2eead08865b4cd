"""What a monitor group's change of state produces, apart from the engine's bookkeeping: the
event's id, the variables its message is rendered from, and the incident operations that go
with it (open, a timeline line, the severity, resolve), queued to run in the transaction that
stores the evaluation."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

from sqlalchemy.engine import Connection

from driftloop.config import MonitorConfig
from driftloop.messages import format_value
from driftloop.monitors.events import Event, MonitorState
from driftloop.monitors.history import GroupState
from driftloop.monitors.incidents import IncidentStore, monitor_incident_id
from driftloop.monitors.timeline import STATE_CHANGE

IncidentOp = Callable[[Connection], object]
BAD_STATES = (MonitorState.WARN, MonitorState.ALERT)


def event_id(monitor: str, key: str, previous: str, state: str, now: float, renotify: bool) -> str:
    """The same transition always has the same id, so a retried evaluation sends it once."""
    text = f"{monitor}\x00{key}\x00{previous}\x00{state}\x00{now!r}\x00{int(renotify)}"
    return "evt-" + hashlib.sha256(text.encode()).hexdigest()[:24]


def describe(group: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(group.items())) or "all"


def message_variables(
    monitor: MonitorConfig, state: GroupState, new: MonitorState, incident_id: str | None
) -> dict[str, str]:
    """What ``{{...}}`` in a monitor's message may name, for ``state`` moving to ``new``."""
    previous = str(state.state)
    return {
        **state.group,
        "monitor": monitor.name,
        "metric": monitor.metric,
        "aggregation": monitor.aggregation,
        "window": format_value(monitor.window) + "s",
        "state": str(new),
        "previous_state": previous,
        "previous": previous,  # the old name of previous_state, still rendered
        "value": format_value(state.value),
        "threshold": format_value(state.threshold),
        "model": state.group.get("model", ""),
        "group": describe(state.group),
        "incident_id": incident_id or "",
        "drifted_features": ", ".join(state.drifted_features or ()),
    }


def open_incident(
    incidents: IncidentStore,
    monitor: MonitorConfig,
    state: GroupState,
    new: MonitorState,
    now: float,
) -> tuple[str, IncidentOp]:
    """The id of the incident a group going bad opens, and the operation that opens it (the id
    is derived from monitor, group and time, so the events carry it before it is stored)."""
    incident_id = monitor_incident_id(monitor.name, state.group_key, now)
    title = f"{monitor.name} {new} for {describe(state.group)}"
    group, key = dict(state.group), state.group_key
    return incident_id, lambda c: incidents.open_monitor_incident(
        monitor.name, group, key, title=title, severity=str(new), timestamp=now, connection=c
    )


def incident_ops(
    incidents: IncidentStore, monitor: MonitorConfig, event: Event
) -> list[IncidentOp]:
    """For an event of an open incident: its timeline line, the raised severity of a bad new
    state, and the resolution when the group is OK again."""
    incident_id = event.incident_id
    if incident_id is None:
        return []
    new, now = event.state, event.timestamp
    kind = "renotified" if event.renotification else STATE_CHANGE
    summary = f"still {new}" if event.renotification else f"{event.previous} → {new}"
    data = {
        "event_id": event.event_id,
        "previous": str(event.previous),
        "state": str(new),
        "value": event.value,
        "threshold": event.threshold,
    }
    ops: list[IncidentOp] = [
        lambda c: incidents.add_timeline_entry(
            incident_id, kind, f"{summary}: {event.message}", data, timestamp=now, connection=c
        )
    ]
    if new in BAD_STATES and not event.renotification:
        ops.append(lambda c: incidents.update_severity(incident_id, str(new), connection=c))
    if new == MonitorState.OK:
        ops.append(
            lambda c: incidents.resolve_incident(
                incident_id, f"{monitor.name} recovered", timestamp=now, connection=c
            )
        )
    return ops
