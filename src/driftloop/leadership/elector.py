"""The control plane's roles, each led by one process at a time.

``driftloop up`` runs two roles: ``monitors`` (monitor evaluation and notification delivery)
and ``worker`` (the retrain worker and its retry policy); ``up --no-worker`` runs the first,
``driftloop worker`` the second. Every such process keeps trying to lead its roles: a follower
tries every ``control.renew_interval``, the leader renews its lease as often; a leader that
cannot renew for ``control.lease_duration`` (less one interval) stops leading on its own, and a
follower takes an expired lease over. A clean stop releases the leases at once.

On SQLite a second process for a role is refused at start (:mod:`.process_lock`) and the one
process takes its roles over at once, whatever an earlier, dead process left in the table.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Connection

from driftloop.database import Database
from driftloop.leadership.lease import ControlLease, LeaseLostError, OnAcquired
from driftloop.leadership.process_lock import ProcessLock

logger = logging.getLogger("driftloop.leadership")

Fence = Callable[[Connection], None]
"""Called first in a control-plane write's transaction; raises LeaseLostError to refuse it."""


@dataclass(frozen=True)
class Role:
    """What a process does while it leads ``name``: ``start`` when elected, ``stop`` when
    deposed or stopping; ``on_acquired`` runs inside the acquiring transaction."""

    name: str
    start: Callable[[], None]
    stop: Callable[[], None]
    on_acquired: OnAcquired | None = None


class ControlPlane:
    """Leases for ``roles`` held (or sought) by one process, ``holder``."""

    def __init__(
        self,
        database: Database,
        roles: Sequence[Role],
        *,
        holder: str,
        lease_duration: float,
        renew_interval: float,
    ) -> None:
        if not 0 < renew_interval < lease_duration:
            raise ValueError(
                f"the renew interval ({renew_interval}s) must be shorter than "
                f"the lease ({lease_duration}s)"
            )
        self.database = database
        self.holder = holder
        self.roles = {role.name: role for role in roles}
        self.lease_duration = lease_duration
        self.renew_interval = renew_interval
        self.leases = {
            role.name: ControlLease(
                database, role.name, holder, duration=lease_duration, on_acquired=role.on_acquired
            )
            for role in roles
        }
        self._locks = {
            name: ProcessLock(path)
            for name in self.roles
            if (path := _lock_path(database, name)) is not None
        }
        self._leading: set[str] = set()
        self._renewed_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def single_process(self) -> bool:
        """SQLite: the process lock, not the lease's expiry, keeps others out."""
        return self.database.dialect == "sqlite"

    def leads(self, role: str) -> bool:
        return role in self._leading

    def fence(self, *roles: str) -> Fence:
        """A fence that lets a write through while this process leads any of ``roles``."""
        leases = [self.leases[role] for role in roles if role in self.leases]

        def check(connection: Connection) -> None:
            refusal: LeaseLostError | None = None
            for lease in leases:
                try:
                    lease.fence(connection)
                    return
                except LeaseLostError as exc:
                    refusal = refusal or exc
            raise refusal or LeaseLostError(
                f"this process ({self.holder}) runs none of the "
                f"roles {list(roles)}: its write is refused"
            )

        return check

    def start(self) -> None:
        """Take the process locks (SQLite), try to lead every role once now, then keep trying
        (and renewing) in the background."""
        for name, lock in self._locks.items():
            try:
                lock.acquire(f"control plane's {name} role")
            except BaseException:
                self._release_locks()
                raise
        self._stop.clear()
        self._round()
        self._thread = threading.Thread(target=self._run, name="driftloop-leadership", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop leading (each led role's ``stop``), release the leases and the locks."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(self.lease_duration + 5)
        for name in list(self._leading):
            self._depose(name, "stopping")
        for lease in self.leases.values():
            try:
                lease.release()
            except Exception:  # the store is down: the lease expires on its own
                logger.warning("could not release the %s lease", lease.role, exc_info=True)
        self._release_locks()

    def _release_locks(self) -> None:
        for lock in self._locks.values():
            lock.release()

    def _run(self) -> None:
        while not self._stop.wait(self.renew_interval):
            self._round()

    def _round(self) -> None:
        for name in self.roles:
            if self._stop.is_set() and self._thread is not None:
                return
            self._try(name)

    def _try(self, name: str) -> None:
        lease = self.leases[name]
        leading = name in self._leading
        try:
            held = lease.acquire(force=self.single_process)
        except Exception as exc:
            silent_for = time.monotonic() - self._renewed_at.get(name, 0.0)
            logger.warning(
                "process %s could not %s the %s lease: %s",
                self.holder,
                "renew" if leading else "try",
                name,
                exc,
            )
            if leading and silent_for > self.lease_duration - self.renew_interval:
                self._depose(
                    name,
                    f"not renewed for {silent_for:.1f}s (the store is "
                    "unreachable); another process may lead it now",
                )
            return
        if held:
            self._renewed_at[name] = time.monotonic()
        if held and not leading:
            self._elect(name)
        elif leading and not held:
            self._depose(name, "another process holds it now")

    def _elect(self, name: str) -> None:
        self._leading.add(name)
        logger.info(
            "process %s became leader of the %s role (lease token %s)",
            self.holder,
            name,
            self.leases[name].token,
        )
        try:
            self.roles[name].start()
        except Exception:
            logger.exception(
                "process %s could not start the %s role; giving it up", self.holder, name
            )
            self._leading.discard(name)
            self.leases[name].release()

    def _depose(self, name: str, why: str) -> None:
        self._leading.discard(name)
        if why != "stopping":
            self.leases[name].abandon()
            logger.warning("process %s lost the lease of the %s role: %s", self.holder, name, why)
        else:
            logger.info("process %s stops leading the %s role", self.holder, name)
        try:
            self.roles[name].stop()
        except Exception:
            logger.exception("stopping the %s role failed", name)


def _lock_path(database: Database, role: str) -> Path | None:
    """The lock file beside a SQLite database file (None: not SQLite, or in memory)."""
    if database.dialect != "sqlite":
        return None
    name = database.engine.url.database
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name).with_name(f"{Path(name).name}.{role}.lock")
