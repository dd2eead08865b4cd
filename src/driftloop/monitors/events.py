"""What the monitor engine emits and the notification router consumes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class MonitorState(StrEnum):
    OK = "OK"
    WARN = "WARN"
    ALERT = "ALERT"
    NO_DATA = "NO_DATA"


@dataclass(frozen=True)
class Event:
    """A state transition (or a renotification) of one monitor for one group."""

    event_id: str
    monitor: str
    group: Mapping[str, str]
    previous: MonitorState
    state: MonitorState
    value: float | None
    threshold: float | None
    timestamp: float
    incident_id: str | None
    message: str
    """The monitor's message template rendered for this event, mentions included."""
    handles: tuple[str, ...] = ()
    """The ``@handle`` mentions left in the rendered message: where the router sends it."""
    renotification: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> str | None:
        return self.group.get("model")

    @property
    def is_recovery(self) -> bool:
        return self.state == MonitorState.OK and self.previous in {
            MonitorState.WARN, MonitorState.ALERT
        }
