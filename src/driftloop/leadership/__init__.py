"""Who leads the control plane: a lease per role in the store, with fencing tokens
(:mod:`.lease`), the roles a process leads or waits for (:mod:`.elector`), and on SQLite one
process per role (:mod:`.process_lock`). See docs/reliability.md, "Control plane failover"."""

from driftloop.leadership.elector import ControlPlane, Fence, Role
from driftloop.leadership.lease import ControlLease, LeaseHolder, LeaseLostError
from driftloop.leadership.process_lock import ControlProcessLockedError, ProcessLock

__all__ = [
    "ControlLease",
    "ControlPlane",
    "ControlProcessLockedError",
    "Fence",
    "LeaseHolder",
    "LeaseLostError",
    "ProcessLock",
    "Role",
]
