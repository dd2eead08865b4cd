"""What the engine remembers between evaluations and across restarts: the state of every
(monitor, group) and every event it emitted."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import OperationalError

from driftloop.database import Database
from driftloop.errors import BackendUnavailableError
from driftloop.monitors.events import Event, MonitorState
from driftloop.monitors.tables import monitor_events, monitor_states
from driftloop.timestamps import iso_utc


def group_key(group: Mapping[str, str]) -> str:
    """The canonical text of a group (``{"model": "a"}`` → ``{"model":"a"}``)."""
    return json.dumps(dict(sorted(group.items())), separators=(",", ":"), ensure_ascii=False)


@dataclass
class GroupState:
    """The state of one monitor for one group, with what the engine needs to carry on."""

    monitor: str
    group: dict[str, str]
    state: MonitorState = MonitorState.OK
    since: float = 0.0
    value: float | None = None
    threshold: float | None = None
    last_evaluated: float | None = None
    last_data_at: float | None = None
    last_notified: float | None = None
    first_seen: float | None = None
    incident_id: str | None = None
    reference_key: str | None = None
    cursor: float | None = None
    drifted_features: list[str] | None = None
    """A ``feature.*`` drift monitor's features that drifted (since its reference), by name."""
    stored: bool = field(default=False, compare=False)

    @property
    def group_key(self) -> str:
        return group_key(self.group)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("stored")
        data["state"] = str(self.state)
        for name in (
            "since",
            "last_evaluated",
            "last_data_at",
            "last_notified",
            "first_seen",
            "cursor",
        ):
            data[name] = iso_utc(data[name])
        return data


_STATE_COLUMNS = (
    "state",
    "since",
    "value",
    "threshold",
    "last_evaluated",
    "last_data_at",
    "last_notified",
    "first_seen",
    "incident_id",
    "reference_key",
    "cursor",
    "drifted_features",
)


class MonitorStateStore:
    """Loads and saves :class:`GroupState` rows and :class:`Event` rows."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def _unavailable(self, exc: OperationalError) -> BackendUnavailableError:
        return BackendUnavailableError(f"monitor store {self.database.safe_url}: {exc.orig}")

    def load_states(self, monitor: str | None = None) -> dict[tuple[str, str], GroupState]:
        statement = sa.select(monitor_states)
        if monitor is not None:
            statement = statement.where(monitor_states.c.monitor == monitor)
        try:
            with self.database.engine.connect() as connection:
                rows = connection.execute(statement).mappings().all()
        except OperationalError as exc:
            raise self._unavailable(exc) from exc
        states: dict[tuple[str, str], GroupState] = {}
        for row in rows:
            state = GroupState(
                monitor=row["monitor"],
                group=json.loads(row["group_tags"]),
                stored=True,
                **{name: row[name] for name in _STATE_COLUMNS},
            )
            if state.drifted_features is not None:
                state.drifted_features = json.loads(str(state.drifted_features))
            state.state = MonitorState(row["state"])
            states[(state.monitor, row["group_key"])] = state
        return states

    def save_states(self, connection: Connection, states: Sequence[GroupState]) -> None:
        updates = [s for s in states if s.stored]
        inserts = [s for s in states if not s.stored]
        c = monitor_states.c
        if updates:
            connection.execute(
                monitor_states.update()
                .where(
                    c.monitor == sa.bindparam("b_monitor"),
                    c.group_key == sa.bindparam("b_group_key"),
                )
                .values({name: sa.bindparam(f"b_{name}") for name in _STATE_COLUMNS}),
                [
                    {
                        "b_monitor": s.monitor,
                        "b_group_key": s.group_key,
                        **{f"b_{name}": _column(s, name) for name in _STATE_COLUMNS},
                    }
                    for s in updates
                ],
            )
        if inserts:
            connection.execute(
                monitor_states.insert(),
                [
                    {
                        "monitor": s.monitor,
                        "group_key": s.group_key,
                        "group_tags": json.dumps(s.group, sort_keys=True),
                        **{name: _column(s, name) for name in _STATE_COLUMNS},
                    }
                    for s in inserts
                ],
            )
        for s in inserts:
            s.stored = True

    def delete_states(self, connection: Connection, states: Sequence[GroupState]) -> None:
        for state in states:
            connection.execute(
                monitor_states.delete().where(
                    monitor_states.c.monitor == state.monitor,
                    monitor_states.c.group_key == state.group_key,
                )
            )

    def save_events(self, connection: Connection, events: Sequence[Event]) -> None:
        if not events:
            return
        known = set(
            connection.execute(
                sa.select(monitor_events.c.event_id).where(
                    monitor_events.c.event_id.in_([e.event_id for e in events])
                )
            ).scalars()
        )
        fresh = [e for e in events if e.event_id not in known]
        if fresh:
            connection.execute(monitor_events.insert(), [_event_row(e) for e in fresh])

    def list_events(
        self,
        *,
        monitor: str | None = None,
        model: str | None = None,
        incident_id: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[Event]:
        """Events, newest first."""
        e = monitor_events.c
        statement = sa.select(monitor_events).order_by(e.timestamp.desc(), e.event_id)
        if monitor is not None:
            statement = statement.where(e.monitor == monitor)
        if model is not None:
            statement = statement.where(e.model == model)
        if incident_id is not None:
            statement = statement.where(e.incident_id == incident_id)
        if since is not None:
            statement = statement.where(e.timestamp >= since)
        try:
            with self.database.engine.connect() as connection:
                rows = connection.execute(statement.limit(max(1, limit))).mappings().all()
        except OperationalError as exc:
            raise self._unavailable(exc) from exc
        return [_event(row) for row in rows]


def _column(state: GroupState, name: str) -> Any:
    value = getattr(state, name)
    if name == "drifted_features":
        return None if value is None else json.dumps(value)
    return str(value) if isinstance(value, MonitorState) else value


def _event_row(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "monitor": event.monitor,
        "group_key": group_key(event.group),
        "group_tags": json.dumps(dict(event.group), sort_keys=True),
        "model": event.model,
        "previous": str(event.previous),
        "state": str(event.state),
        "value": event.value,
        "threshold": event.threshold,
        "timestamp": event.timestamp,
        "incident_id": event.incident_id,
        "message": event.message,
        "handles": json.dumps(list(event.handles)),
        "renotification": event.renotification,
        "details": json.dumps(dict(event.details), sort_keys=True, default=str),
    }


def _event(row: RowMapping) -> Event:
    return Event(
        event_id=row["event_id"],
        monitor=row["monitor"],
        group=json.loads(row["group_tags"]),
        previous=MonitorState(row["previous"]),
        state=MonitorState(row["state"]),
        value=row["value"],
        threshold=row["threshold"],
        timestamp=float(row["timestamp"]),
        incident_id=row["incident_id"],
        message=row["message"],
        handles=tuple(json.loads(row["handles"])),
        renotification=bool(row["renotification"]),
        details=json.loads(row["details"]),
    )


DETAIL_MOMENTS = frozenset({"window_start", "window_end", "last_data_at"})
"""The moments in an event's details (the evaluated window, the last data before NO_DATA): kept
as seconds in the event, ISO 8601 UTC in its JSON."""


def event_to_dict(event: Event) -> dict[str, Any]:
    """An event as JSON-ready data (for the CLI and the API)."""
    return {
        "event_id": event.event_id,
        "monitor": event.monitor,
        "group": dict(event.group),
        "model": event.model,
        "previous": str(event.previous),
        "state": str(event.state),
        "value": event.value,
        "threshold": event.threshold,
        "timestamp": iso_utc(event.timestamp),
        "incident_id": event.incident_id,
        "message": event.message,
        "handles": list(event.handles),
        "renotification": event.renotification,
        "is_recovery": event.is_recovery,
        "details": details_json(event.details),
    }


def details_json(details: Mapping[str, Any]) -> dict[str, Any]:
    """An event's details for JSON: its :data:`DETAIL_MOMENTS` as ISO 8601 UTC."""
    return {
        key: iso_utc(value) if key in DETAIL_MOMENTS and isinstance(value, int | float) else value
        for key, value in details.items()
    }


@dataclass(frozen=True)
class MonitorStatus:
    """A configured monitor and the stored state of each of its groups."""

    name: str
    type: str
    metric: str
    aggregation: str
    window: float
    groups: tuple[GroupState, ...]
    error: str | None = None

    @property
    def worst(self) -> MonitorState | None:
        """The most severe state among the groups (ALERT > WARN > NO_DATA > OK)."""
        order = [MonitorState.OK, MonitorState.NO_DATA, MonitorState.WARN, MonitorState.ALERT]
        if not self.groups:
            return None
        return max((g.state for g in self.groups), key=order.index)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "metric": self.metric,
            "aggregation": self.aggregation,
            "window": self.window,
            "state": None if self.worst is None else str(self.worst),
            "error": self.error,
            "groups": [g.to_dict() for g in self.groups],
        }
