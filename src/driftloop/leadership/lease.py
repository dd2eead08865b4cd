"""A lease in the store with a fencing token: which process leads a control-plane role.

A role's row names its holder, a token and an expiry. A process *acquires* the role when the
row is missing or expired (or, on SQLite, when the process lock proves no other process is
there): the token goes up by one. The holder *renews* (moves the expiry) every
``control.renew_interval``; a renewal that finds another holder or another token means this
process was deposed.

Fencing: every control-plane write calls :meth:`ControlLease.fence` first in its own
transaction. It reads the role's row with a shared lock (``FOR SHARE`` on PostgreSQL; SQLite's
write lock) and refuses, with :class:`LeaseLostError`, unless this process holds the role under
the token it acquired. A takeover updates that row, so it waits for the write's commit, or the write
waits for the takeover's and then sees the new token: a deposed leader's late write never
lands after its successor took over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from driftloop.database import Database
from driftloop.errors import LeaseLostError as LeaseLostError  # the old import path
from driftloop.leadership.tables import control_leases

logger = logging.getLogger("driftloop.leadership")


OnAcquired = Callable[[Connection, "str | None"], None]
"""Runs inside the acquiring transaction with the previous holder (None: there was none, or
it was this process): what a new leader must take over, atomically with the lease."""


@dataclass(frozen=True)
class LeaseHolder:
    """A role's row: who holds it, under which token, until when."""

    role: str
    holder: str
    token: int
    expires_at: float


class ControlLease:
    """One role's lease for one process (``holder``)."""

    def __init__(
        self,
        database: Database,
        role: str,
        holder: str,
        *,
        duration: float,
        on_acquired: OnAcquired | None = None,
    ) -> None:
        if duration <= 0:
            raise ValueError(f"lease duration must be positive, got {duration}")
        self.database = database
        self.role = role
        self.holder = holder
        self.duration = duration
        self.on_acquired = on_acquired
        self._token: int | None = None
        self._lock = threading.Lock()

    @property
    def token(self) -> int | None:
        """The token this process holds the role under; None while it does not lead."""
        return self._token

    def _now(self, connection: Connection) -> float:
        if self.database.dialect == "postgresql":  # one clock for every replica
            return float(
                connection.execute(
                    sa.select(sa.func.extract("epoch", sa.func.clock_timestamp()))
                ).scalar_one()
            )
        return time.time()

    def current(self) -> LeaseHolder | None:
        """The role's row as stored (None before anyone ever led it)."""
        with self.database.engine.connect() as connection:
            row = connection.execute(
                sa.select(control_leases).where(control_leases.c.role == self.role)
            ).first()
        return None if row is None else LeaseHolder(row.role, row.holder, row.token, row.expires_at)

    def acquire(self, *, force: bool = False) -> bool:
        """Take the role if nobody holds it (or ``force``: the caller knows nobody else can);
        True when this process leads it now (renewed if it already did)."""
        with self._lock:
            if self._token is not None:
                return self._renew()
            seen = self.current()
            if seen is not None and not force and seen.holder != self.holder:
                with self.database.engine.connect() as connection:
                    if seen.expires_at > self._now(connection):
                        return False  # cheap look first: no row lock while someone leads
            try:
                return self._take(force=force)
            except SqlIntegrityError:
                return False  # another process inserted the first row at the same moment

    def _take(self, *, force: bool) -> bool:
        table = control_leases
        with self.database.engine.begin() as connection:
            now = self._now(connection)
            row = connection.execute(
                sa.select(table).where(table.c.role == self.role).with_for_update()
            ).first()
            if row is None:
                token, previous = 1, None
                connection.execute(
                    table.insert().values(
                        role=self.role,
                        holder=self.holder,
                        token=token,
                        acquired_at=now,
                        renewed_at=now,
                        expires_at=now + self.duration,
                    )
                )
            else:
                if not force and row.holder != self.holder and row.expires_at > now:
                    return False
                token = int(row.token) + 1
                previous = None if row.holder == self.holder else str(row.holder)
                connection.execute(
                    table.update()
                    .where(table.c.role == self.role)
                    .values(
                        holder=self.holder,
                        token=token,
                        acquired_at=now,
                        renewed_at=now,
                        expires_at=now + self.duration,
                    )
                )
            self._token = token
            try:
                if self.on_acquired is not None:
                    self.on_acquired(connection, previous)
            except BaseException:
                self._token = None
                raise
        return True

    def _renew(self) -> bool:
        assert self._token is not None
        table = control_leases
        with self.database.engine.begin() as connection:
            now = self._now(connection)
            renewed = connection.execute(
                table.update()
                .where(
                    table.c.role == self.role,
                    table.c.holder == self.holder,
                    table.c.token == self._token,
                )
                .values(renewed_at=now, expires_at=now + self.duration)
            ).rowcount
        if renewed != 1:
            self._token = None
            return False
        return True

    def renew(self) -> bool:
        """Move the expiry on; False (and the role is no longer this process's) when another
        process took it over."""
        with self._lock:
            return self._token is not None and self._renew()

    def release(self) -> None:
        """Give the role up now (a clean shutdown): another process takes it at its next try
        instead of after the expiry."""
        with self._lock:
            token, self._token = self._token, None
            if token is None:
                return
            table = control_leases
            with self.database.engine.begin() as connection:
                connection.execute(
                    table.update()
                    .where(
                        table.c.role == self.role,
                        table.c.holder == self.holder,
                        table.c.token == token,
                    )
                    .values(expires_at=0.0)
                )

    def abandon(self) -> None:
        """Stop counting as the holder without touching the store (it may be unreachable):
        this process's writes are refused from now on, whatever the row says."""
        with self._lock:
            self._token = None

    def fence(self, connection: Connection) -> None:
        """Refuse the write of ``connection``'s transaction unless this process leads the role
        under its token; call it first in the transaction (its shared lock on the role's row
        then holds a takeover back until the write commits)."""
        token = self._token
        if token is None:
            raise LeaseLostError(
                f"this process ({self.holder}) does not lead the "
                f"{self.role} role: its write is refused"
            )
        table = control_leases
        if self.database.dialect == "sqlite":  # no FOR SHARE: take the write lock instead
            connection.execute(
                table.update().where(table.c.role == self.role).values(token=table.c.token)
            )
        row = connection.execute(
            sa.select(table.c.holder, table.c.token)
            .where(table.c.role == self.role)
            .with_for_update(read=True)
        ).first()
        if row is None or row.holder != self.holder or int(row.token) != token:
            holder = "nobody" if row is None else f"{row.holder} (token {row.token})"
            raise LeaseLostError(
                f"this process ({self.holder}, token {token}) was deposed as leader of the "
                f"{self.role} role by {holder}: its write is refused"
            )
