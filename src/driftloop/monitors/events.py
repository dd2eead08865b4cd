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


RETIRED_REASON = "version no longer served"
"""``details.reason`` of the event that closes a retired group (flag ``is_retired``)."""

_BAD = (MonitorState.WARN, MonitorState.ALERT)


def transition_flags(
    previous: MonitorState, new: MonitorState, *, renotification: bool, retired: bool
) -> dict[str, bool]:
    """The section flags of a transition (``driftloop.messages.FLAGS``, one vocabulary for
    monitor messages and webhook payloads)."""
    return {
        "is_alert": new == MonitorState.ALERT,
        "is_warning": new == MonitorState.WARN,
        "is_no_data": new == MonitorState.NO_DATA,
        "is_ok": new == MonitorState.OK,
        "is_recovery": new == MonitorState.OK and previous in _BAD,
        "is_alert_recovery": new == MonitorState.OK and previous == MonitorState.ALERT,
        "is_warning_recovery": new == MonitorState.OK and previous == MonitorState.WARN,
        "is_no_data_recovery": previous == MonitorState.NO_DATA and new != MonitorState.NO_DATA,
        "is_renotify": renotification,
        "is_retired": retired,
    }


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
        return self.state == MonitorState.OK and self.previous in _BAD

    @property
    def flags(self) -> dict[str, bool]:
        """The same flags its message was rendered with (:func:`transition_flags`)."""
        return transition_flags(
            self.previous,
            self.state,
            renotification=self.renotification,
            retired=self.details.get("reason") == RETIRED_REASON,
        )
