"""The notification router's store: the events to send (``notify_events``, replayed after a
restart until routed), the idempotency keys (``notify_sent``: one delivery per event and
notifier across restarts and replicas) and the log of every attempt (``notify_deliveries``).
Every write passes the control plane's fence first."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from driftloop.database.core import Database
from driftloop.monitors.events import Event, MonitorState
from driftloop.monitors.timeline import TimelineEntry
from driftloop.notify.base import DeliveryResult, clean_message
from driftloop.notify.tables import notify_deliveries, notify_events, notify_sent

MAX_TIMELINE = 200
"""The most transitions a notification's timeline shows."""


@dataclass(frozen=True)
class DeliveryAttempt:
    """One row of the delivery log."""

    event_id: str
    notifier: str
    attempt: int
    status: str
    http_status: int | None
    error: str | None
    detail: str | None
    duration_ms: float
    retry_after: float | None
    created_at: float


class DeliveryLog:
    """The router's tables; ``claim_timeout``: how long a claim in progress (``pending``) is
    respected before another process may take it over."""

    def __init__(
        self, database: Database, *, clock: Callable[[], float], claim_timeout: float
    ) -> None:
        self._database_engine = database.engine
        self._clock = clock
        self._claim_timeout = claim_timeout
        self.fence: Callable[[Connection], None] | None = None
        """Called first in every write: the control plane's fence, which refuses them once
        this process no longer leads."""

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        with self._database_engine.begin() as connection:
            if self.fence is not None:
                self.fence(connection)
            yield connection

    # -- events ------------------------------------------------------------------------------

    def record_events(self, connection: Connection, events: Sequence[Event]) -> None:
        """Record events to send in the caller's transaction (the monitor engine's, so that a
        stored transition is never without its notification); those recorded before are left."""
        if not events:
            return
        known = set(
            connection.execute(
                sa.select(notify_events.c.event_id).where(
                    notify_events.c.event_id.in_([e.event_id for e in events])
                )
            ).scalars()
        )
        for event in events:
            if event.event_id not in known:
                connection.execute(notify_events.insert().values(**self._event_row(event)))

    def record_event(self, event: Event) -> None:
        try:
            with self._begin() as connection:
                connection.execute(notify_events.insert().values(**self._event_row(event)))
        except SqlIntegrityError:
            pass  # seen before: the claims decide what still needs sending

    def _event_row(self, event: Event) -> dict[str, object]:
        return dict(
            event_id=event.event_id,
            incident_id=event.incident_id,
            monitor=event.monitor,
            group_json=json.dumps(dict(event.group), sort_keys=True),
            previous=str(event.previous),
            state=str(event.state),
            value=event.value,
            threshold=event.threshold,
            timestamp=event.timestamp,
            message=event.message,
            handles_json=json.dumps(list(event.handles)),
            renotification=event.renotification,
            details_json=json.dumps(dict(event.details), default=str),
            received_at=self._clock(),
            routed_at=None,
        )

    def mark_routed(self, event_id: str) -> None:
        with self._begin() as connection:
            connection.execute(
                notify_events.update()
                .where(notify_events.c.event_id == event_id)
                .values(routed_at=self._clock())
            )

    def unrouted_events(self) -> list[Event]:
        """The events recorded but never routed, oldest first (replayed on start)."""
        table = notify_events
        with self._database_engine.connect() as connection:
            rows = (
                connection.execute(
                    sa.select(table)
                    .where(table.c.routed_at.is_(None))
                    .order_by(table.c.timestamp, table.c.received_at)
                )
                .mappings()
                .all()
            )
        return [_event_from_row(row) for row in rows]

    def transitions(self, incident_id: str, until: float) -> tuple[TimelineEntry, ...]:
        """An incident's recorded transitions up to ``until``, oldest first."""
        table = notify_events
        with self._database_engine.connect() as connection:
            rows = connection.execute(
                sa.select(
                    table.c.timestamp,
                    table.c.previous,
                    table.c.state,
                    table.c.value,
                    table.c.message,
                )
                .where(table.c.incident_id == incident_id, table.c.timestamp <= until)
                .order_by(table.c.timestamp, table.c.received_at)
                .limit(MAX_TIMELINE)
            ).all()
        return tuple(
            TimelineEntry.transition(
                r.timestamp, r.previous, r.state, r.value, clean_message(r.message)
            )
            for r in rows
        )

    # -- claims and attempts -----------------------------------------------------------------

    def claim(self, event_id: str, notifier: str) -> bool:
        """Take the (event, notifier) key; False when it was delivered or is being delivered."""
        now = self._clock()
        table = notify_sent
        try:
            with self._begin() as connection:
                connection.execute(
                    table.insert().values(
                        event_id=event_id,
                        notifier=notifier,
                        status="pending",
                        attempts=0,
                        claimed_at=now,
                        finished_at=None,
                    )
                )
            return True
        except SqlIntegrityError:
            pass
        with self._begin() as connection:
            row = connection.execute(
                sa.select(table.c.status, table.c.claimed_at).where(
                    table.c.event_id == event_id, table.c.notifier == notifier
                )
            ).first()
            if row is None or row.status in {"delivered", "skipped"}:
                return False
            if row.status == "pending" and now - row.claimed_at < self._claim_timeout:
                return False
            taken = connection.execute(
                table.update()
                .where(
                    table.c.event_id == event_id,
                    table.c.notifier == notifier,
                    table.c.status == row.status,
                    table.c.claimed_at == row.claimed_at,
                )
                .values(status="pending", claimed_at=now, finished_at=None)
            )
            return bool(taken.rowcount == 1)

    def finish_claim(
        self,
        event_id: str,
        notifier: str,
        result: DeliveryResult,
        attempts: int,
        *,
        interrupted: bool,
    ) -> None:
        status = "failed" if interrupted else result.status
        with self._begin() as connection:
            connection.execute(
                notify_sent.update()
                .where(notify_sent.c.event_id == event_id, notify_sent.c.notifier == notifier)
                .values(
                    status=status,
                    attempts=notify_sent.c.attempts + attempts,
                    detail=result.detail or result.error,
                    finished_at=self._clock(),
                )
            )

    def log_attempt(
        self,
        event_id: str,
        notifier: str,
        attempt: int,
        result: DeliveryResult,
        duration_ms: float,
        *,
        retrying: bool = False,
    ) -> None:
        with self._begin() as connection:
            connection.execute(
                notify_deliveries.insert().values(
                    event_id=event_id,
                    notifier=notifier,
                    attempt=attempt,
                    status="retrying" if retrying else result.status,
                    http_status=result.http_status,
                    error=result.error,
                    detail=result.detail,
                    duration_ms=duration_ms,
                    retry_after=result.retry_after,
                    created_at=self._clock(),
                )
            )

    def deliveries(
        self, *, event_id: str | None = None, notifier: str | None = None, limit: int = 100
    ) -> list[DeliveryAttempt]:
        """The delivery log, newest first."""
        table = notify_deliveries
        query = sa.select(table).order_by(table.c.id.desc()).limit(limit)
        if event_id is not None:
            query = query.where(table.c.event_id == event_id)
        if notifier is not None:
            query = query.where(table.c.notifier == notifier)
        with self._database_engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [
            DeliveryAttempt(
                r["event_id"],
                r["notifier"],
                r["attempt"],
                r["status"],
                r["http_status"],
                r["error"],
                r["detail"],
                r["duration_ms"],
                r["retry_after"],
                r["created_at"],
            )
            for r in rows
        ]


def _event_from_row(row: sa.RowMapping) -> Event:
    return Event(
        event_id=row["event_id"],
        monitor=row["monitor"],
        group=json.loads(row["group_json"]),
        previous=MonitorState(row["previous"]),
        state=MonitorState(row["state"]),
        value=row["value"],
        threshold=row["threshold"],
        timestamp=row["timestamp"],
        incident_id=row["incident_id"],
        message=row["message"],
        handles=tuple(json.loads(row["handles_json"])),
        renotification=bool(row["renotification"]),
        details=json.loads(row["details_json"]),
    )
