"""One line of an incident's timeline, the one type every part uses: the incident store keeps
them (``kind`` such as ``state_change``, ``notified``, ``job started``, ``deployed``), a
notification carries the incident's transitions so far, the dashboard and the demo show them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from driftloop.timestamps import iso_utc

STATE_CHANGE = "state_change"


@dataclass(frozen=True)
class TimelineEntry:
    """One line of an incident's timeline, oldest first wherever a timeline is a sequence.

    ``entry_id`` and ``incident_id`` are set for an entry the incident store holds; an entry
    made on the fly (a notification's transition built from its event, the demo's log) has
    neither. A state change keeps ``previous``, ``state`` and ``value`` in ``data``.
    """

    timestamp: float
    kind: str
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)
    entry_id: int | None = None
    incident_id: str | None = None

    @classmethod
    def transition(
        cls, timestamp: float, previous: str, state: str, value: float | None, message: str
    ) -> TimelineEntry:
        """A monitor's move from ``previous`` to ``state`` at ``value``."""
        return cls(
            timestamp, STATE_CHANGE, message, {"previous": previous, "state": state, "value": value}
        )

    @property
    def previous(self) -> str:
        """The state a state change left (empty for other kinds)."""
        return str(self.data.get("previous", ""))

    @property
    def state(self) -> str:
        """The state a state change entered (empty for other kinds)."""
        return str(self.data.get("state", ""))

    @property
    def value(self) -> float | None:
        """The monitored value at a state change (``None`` for other kinds or no data)."""
        value = self.data.get("value")
        return float(value) if isinstance(value, int | float) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id,
            "incident_id": self.incident_id,
            "timestamp": iso_utc(self.timestamp),
            "kind": self.kind,
            "message": self.message,
            "data": dict(self.data),
        }
