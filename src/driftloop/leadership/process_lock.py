"""On SQLite, one control process per role: an OS file lock beside the database.

A SQLite store is one machine's file, so its control plane is one process: a second
``driftloop up`` (or ``driftloop worker``) on the same database stops at start with an error
that names the process holding the lock (its pid and command line, written into the lock file).
The operating system drops the lock when that process dies, even by ``kill -9``, so a restart
never waits for a stale lock.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import IO

from driftloop.errors import ControlProcessLockedError as ControlProcessLockedError  # old path


class ProcessLock:
    """An exclusive, non-blocking ``flock`` on ``path``; released on :meth:`release`, at exit,
    or when the process dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def acquire(self, what: str) -> None:
        """Take the lock for ``what`` (the role, for the message); raises
        :class:`ControlProcessLockedError` naming the holder when another process has it."""
        if self._file is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        handle = os.fdopen(descriptor, "r+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "an unknown process"
            handle.close()
            raise ControlProcessLockedError(
                f"another process already runs the {what} of this SQLite store: {holder} "
                f"(lock {self.path}). A SQLite store has one control process; stop that one, "
                "or move the store to PostgreSQL to run several with failover"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}: {' '.join(sys.argv) or sys.executable}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()
