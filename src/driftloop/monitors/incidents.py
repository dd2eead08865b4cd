"""Incidents: the events of one (monitor, group) from its first WARN/ALERT until it is OK again,
or an alert that came from outside (Datadog, Alertmanager), each with a timeline that the engine,
the notifier and the retrain pipeline append to ("notified", "job started", "deployed v2")."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import OperationalError

from driftloop.database import Database
from driftloop.errors import BackendUnavailableError, InvalidInputError, NotFoundError
from driftloop.monitors.tables import incident_timeline, incidents
from driftloop.monitors.timeline import TimelineEntry
from driftloop.timestamps import iso_utc


class IncidentStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Incident:
    """An incident; :attr:`timeline` is filled by :meth:`IncidentStore.get_incident` only."""

    incident_id: str
    source: str
    monitor: str | None
    group: Mapping[str, str]
    model: str | None
    title: str
    status: IncidentStatus
    severity: str
    opened_at: float
    resolved_at: float | None
    details: Mapping[str, Any] = field(default_factory=dict)
    timeline: tuple[TimelineEntry, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "source": self.source,
            "monitor": self.monitor,
            "group": dict(self.group),
            "model": self.model,
            "title": self.title,
            "status": str(self.status),
            "severity": self.severity,
            "opened_at": iso_utc(self.opened_at),
            "resolved_at": iso_utc(self.resolved_at),
            "details": dict(self.details),
            "timeline": [entry.to_dict() for entry in self.timeline],
        }


def monitor_incident_id(monitor: str, group_key: str, opened_at: float) -> str:
    """The id of the incident a (monitor, group) opens at a time: the same inputs, the same id."""
    digest = hashlib.sha256(f"{monitor}\x00{group_key}\x00{opened_at!r}".encode()).hexdigest()
    return f"inc-{digest[:20]}"


def _json(data: Mapping[str, Any] | None, what: str) -> str:
    try:
        return json.dumps(dict(data or {}), sort_keys=True, default=str)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{what} must be a JSON object: {exc}") from exc


class IncidentStore:
    """Incidents and their timelines in the shared database."""

    def __init__(self, database: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self.clock = clock

    def _begin(self) -> Any:
        return self.database.engine.begin()

    def _unavailable(self, exc: OperationalError) -> BackendUnavailableError:
        return BackendUnavailableError(f"incident store {self.database.safe_url}: {exc.orig}")

    # ------------------------------------------------------------------ writing

    def open_monitor_incident(
        self,
        monitor: str,
        group: Mapping[str, str],
        group_key: str,
        *,
        title: str,
        severity: str,
        timestamp: float,
        connection: Connection | None = None,
    ) -> str:
        """Open the incident of one (monitor, group); its id is :func:`monitor_incident_id`."""
        incident_id = monitor_incident_id(monitor, group_key, timestamp)
        row = {
            "incident_id": incident_id,
            "source": "monitor",
            "monitor": monitor,
            "group_key": group_key,
            "group_tags": json.dumps(dict(group), sort_keys=True),
            "model": group.get("model"),
            "title": title,
            "status": IncidentStatus.OPEN.value,
            "severity": severity,
            "opened_at": timestamp,
            "resolved_at": None,
            "details": "{}",
        }
        self._run(lambda c: self._insert(c, row, "opened", title, timestamp), connection)
        return incident_id

    def open_external_incident(
        self,
        source: str,
        model: str | None,
        title: str,
        details: Mapping[str, Any] | None = None,
        *,
        dedupe_key: str | None = None,
    ) -> str:
        """Open an incident for an alert that came from outside (``source`` such as
        ``datadog`` or ``alertmanager``). With ``dedupe_key``, an open incident of the same source
        and key is returned instead of opening a second one."""
        if not source.strip():
            raise InvalidInputError("an external incident needs a source (datadog, alertmanager)")
        if not title.strip():
            raise InvalidInputError("an external incident needs a title")
        details_json = _json(details, "incident details")
        now = self.clock()
        group_key = None if dedupe_key is None else f"external:{source}:{dedupe_key}"
        try:
            with self._begin() as connection:
                if group_key is not None:
                    existing = connection.execute(
                        sa.select(incidents.c.incident_id).where(
                            incidents.c.group_key == group_key,
                            incidents.c.status == IncidentStatus.OPEN.value,
                        )
                    ).scalar()
                    if existing is not None:
                        return str(existing)
                incident_id = f"inc-{uuid.uuid4().hex[:20]}"
                row = {
                    "incident_id": incident_id,
                    "source": source,
                    "monitor": None,
                    "group_key": group_key,
                    "group_tags": json.dumps({"model": model} if model else {}),
                    "model": model,
                    "title": title,
                    "status": IncidentStatus.OPEN.value,
                    "severity": "ALERT",
                    "opened_at": now,
                    "resolved_at": None,
                    "details": details_json,
                }
                self._insert(connection, row, "opened", f"{source}: {title}", now)
        except OperationalError as exc:
            raise self._unavailable(exc) from exc
        return incident_id

    def _insert(
        self, connection: Connection, row: dict[str, Any], kind: str, message: str, ts: float
    ) -> None:
        connection.execute(incidents.insert().values(**row))
        connection.execute(
            incident_timeline.insert().values(
                incident_id=row["incident_id"], timestamp=ts, kind=kind, message=message, data="{}"
            )
        )

    def _run(self, work: Callable[[Connection], object], connection: Connection | None) -> None:
        if connection is not None:
            work(connection)
            return
        try:
            with self._begin() as own:
                work(own)
        except OperationalError as exc:
            raise self._unavailable(exc) from exc

    def add_timeline_entry(
        self,
        incident_id: str,
        kind: str,
        message: str,
        data: Mapping[str, Any] | None = None,
        *,
        timestamp: float | None = None,
        connection: Connection | None = None,
    ) -> TimelineEntry:
        """Append to an incident's timeline (``kind`` such as ``notified``, ``job started``,
        ``deployed``); works on resolved incidents too (a late "deployed v2")."""
        if not kind.strip():
            raise InvalidInputError("a timeline entry needs a kind")
        data_json = _json(data, "timeline data")
        ts = self.clock() if timestamp is None else timestamp
        inserted: list[int] = []

        def work(c: Connection) -> None:
            exists = c.execute(
                sa.select(incidents.c.incident_id).where(incidents.c.incident_id == incident_id)
            ).scalar()
            if exists is None:
                raise NotFoundError(f"no incident {incident_id!r}")
            result = c.execute(
                incident_timeline.insert().values(
                    incident_id=incident_id,
                    timestamp=ts,
                    kind=kind,
                    message=message,
                    data=data_json,
                )
            )
            key = result.inserted_primary_key
            inserted.append(int(key[0]) if key is not None else 0)

        self._run(work, connection)
        return TimelineEntry(
            ts, kind, message, json.loads(data_json), entry_id=inserted[0], incident_id=incident_id
        )

    def update_severity(
        self, incident_id: str, severity: str, *, connection: Connection | None = None
    ) -> None:
        self._run(
            lambda c: c.execute(
                incidents.update()
                .where(incidents.c.incident_id == incident_id)
                .values(severity=severity)
            ),
            connection,
        )

    def resolve_incident(
        self,
        incident_id: str,
        message: str = "resolved",
        *,
        timestamp: float | None = None,
        connection: Connection | None = None,
    ) -> None:
        """Mark an incident resolved (a no-op on one already resolved) and say so in its
        timeline."""
        ts = self.clock() if timestamp is None else timestamp

        def work(c: Connection) -> None:
            status = c.execute(
                sa.select(incidents.c.status).where(incidents.c.incident_id == incident_id)
            ).scalar()
            if status is None:
                raise NotFoundError(f"no incident {incident_id!r}")
            if status == IncidentStatus.RESOLVED.value:
                return
            c.execute(
                incidents.update()
                .where(incidents.c.incident_id == incident_id)
                .values(status=IncidentStatus.RESOLVED.value, resolved_at=ts)
            )
            c.execute(
                incident_timeline.insert().values(
                    incident_id=incident_id,
                    timestamp=ts,
                    kind="resolved",
                    message=message,
                    data="{}",
                )
            )

        self._run(work, connection)

    # ------------------------------------------------------------------ reading

    @staticmethod
    def _incident(row: RowMapping, timeline: tuple[TimelineEntry, ...] = ()) -> Incident:
        return Incident(
            incident_id=row["incident_id"],
            source=row["source"],
            monitor=row["monitor"],
            group=json.loads(row["group_tags"]),
            model=row["model"],
            title=row["title"],
            status=IncidentStatus(row["status"]),
            severity=row["severity"],
            opened_at=float(row["opened_at"]),
            resolved_at=None if row["resolved_at"] is None else float(row["resolved_at"]),
            details=json.loads(row["details"]),
            timeline=timeline,
        )

    def list_incidents(
        self,
        status: IncidentStatus | str | None = None,
        model: str | None = None,
        *,
        monitor: str | None = None,
        limit: int = 100,
    ) -> list[Incident]:
        """Newest first, without timelines."""
        statement = sa.select(incidents).order_by(
            incidents.c.opened_at.desc(), incidents.c.incident_id
        )
        if status is not None:
            try:
                wanted = IncidentStatus(status)
            except ValueError:
                raise InvalidInputError(
                    f"unknown incident status {status!r}; expected open or resolved"
                ) from None
            statement = statement.where(incidents.c.status == wanted.value)
        if model is not None:
            statement = statement.where(incidents.c.model == model)
        if monitor is not None:
            statement = statement.where(incidents.c.monitor == monitor)
        try:
            with self.database.engine.connect() as connection:
                rows = connection.execute(statement.limit(max(1, limit))).mappings().all()
        except OperationalError as exc:
            raise self._unavailable(exc) from exc
        return [self._incident(row) for row in rows]

    def count_open(self) -> dict[str, int]:
        """Open incidents by severity (``WARN``, ``ALERT``)."""
        statement = (
            sa.select(incidents.c.severity, sa.func.count())
            .where(incidents.c.status == IncidentStatus.OPEN.value)
            .group_by(incidents.c.severity)
        )
        try:
            with self.database.engine.connect() as connection:
                return {str(row[0]): int(row[1]) for row in connection.execute(statement)}
        except OperationalError as exc:
            raise self._unavailable(exc) from exc

    def get_incident(self, incident_id: str) -> Incident:
        """One incident with its timeline, oldest entry first."""
        try:
            with self.database.engine.connect() as connection:
                row = (
                    connection.execute(
                        sa.select(incidents).where(incidents.c.incident_id == incident_id)
                    )
                    .mappings()
                    .first()
                )
                if row is None:
                    raise NotFoundError(f"no incident {incident_id!r}")
                entries = (
                    connection.execute(
                        sa.select(incident_timeline)
                        .where(incident_timeline.c.incident_id == incident_id)
                        .order_by(incident_timeline.c.timestamp, incident_timeline.c.entry_id)
                    )
                    .mappings()
                    .all()
                )
        except OperationalError as exc:
            raise self._unavailable(exc) from exc
        timeline = tuple(
            TimelineEntry(
                entry_id=int(e["entry_id"]),
                incident_id=e["incident_id"],
                timestamp=float(e["timestamp"]),
                kind=e["kind"],
                message=e["message"],
                data=json.loads(e["data"]),
            )
            for e in entries
        )
        return self._incident(row, timeline)
