"""The notifier contract: a :class:`Notification` in, a :class:`DeliveryResult` out.

A notifier sends once and reports what happened; retries, backoff, the delivery log and
deduplication belong to :class:`~driftloop.notify.router.NotificationRouter`.
"""

from __future__ import annotations

import email.utils
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from driftloop.messages import format_value, mentioned_handles
from driftloop.metrics.points import SeriesPoint
from driftloop.monitors.events import Event, MonitorState
from driftloop.monitors.timeline import TimelineEntry

DeliveryStatus = Literal["delivered", "failed", "skipped", "duplicate"]

_MENTION_TOKEN = re.compile(r"(?<![\w@])@[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class ThresholdLines:
    """The monitor's absolute thresholds, for text and for the lines drawn on the graph."""

    warning: float | None = None
    critical: float | None = None
    direction: Literal["below", "above"] | None = None

    def describe(self) -> str:
        parts = []
        word = {"below": "<", "above": ">", None: ""}[self.direction]
        if self.warning is not None:
            parts.append(f"warning {word} {self.warning:g}".replace("  ", " "))
        if self.critical is not None:
            parts.append(f"critical {word} {self.critical:g}".replace("  ", " "))
        return ", ".join(parts) if parts else "none"


@dataclass(frozen=True)
class Notification:
    """What a notifier needs: the event plus the context to act on it."""

    event: Event
    dashboard_url: str
    thresholds: ThresholdLines = ThresholdLines()
    series: tuple[SeriesPoint, ...] = ()
    """Recent values of the monitored metric, for the graph (may be empty)."""
    timeline: tuple[TimelineEntry, ...] = ()
    """The incident's transitions so far, this event included (state changes, oldest first)."""
    test: bool = False

    @classmethod
    def from_event(
        cls,
        event: Event,
        *,
        dashboard_url: str,
        thresholds: ThresholdLines | None = None,
        series: Sequence[SeriesPoint] = (),
        timeline: Sequence[TimelineEntry] = (),
        test: bool = False,
    ) -> Notification:
        entries = tuple(timeline) or (
            TimelineEntry.transition(
                event.timestamp,
                str(event.previous),
                str(event.state),
                event.value,
                clean_message(event.message),
            ),
        )
        return cls(
            event=event,
            dashboard_url=dashboard_url,
            thresholds=thresholds or ThresholdLines(),
            series=tuple(series),
            timeline=entries,
            test=test,
        )

    @property
    def event_id(self) -> str:
        return self.event.event_id

    @property
    def monitor(self) -> str:
        return self.event.monitor

    @property
    def model(self) -> str | None:
        return self.event.model

    @property
    def state(self) -> MonitorState:
        return self.event.state

    @property
    def incident_id(self) -> str | None:
        return self.event.incident_id

    @property
    def text(self) -> str:
        """The rendered monitor message without its ``@handle`` mentions."""
        return clean_message(self.event.message)

    @property
    def retrain_outcome(self) -> str | None:
        """How a retrain job ended (``rejected``, ``failed``, ``rolled_back``, ``succeeded``)
        when this is a retrain outcome rather than a transition."""
        outcome = self.event.details.get("retrain_outcome")
        return str(outcome) if outcome else None

    @property
    def title(self) -> str:
        event = self.event
        prefix = "[driftloop test] " if self.test else ""
        if self.retrain_outcome is not None:
            label = self.retrain_outcome.replace("_", " ")
            subject = f" on {event.model}" if event.model else ""
            return f"{prefix}[Retrain {label}] {event.monitor}{subject}"
        again = " (renotification)" if event.renotification else ""
        subject = f" on {event.model}" if event.model else ""
        if event.is_recovery:
            return f"{prefix}[Recovered] {event.monitor}{subject}{again}"
        return f"{prefix}[{event.state}] {event.monitor}{subject}{again}"

    @property
    def value_text(self) -> str:
        return format_value(self.event.value)


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of sending one notification through one notifier."""

    status: DeliveryStatus
    notifier: str = ""
    http_status: int | None = None
    error: str | None = None
    detail: str | None = None
    """What the far side answered that matters: an issue key, a file id, a job id."""
    retryable: bool = False
    retry_after: float | None = None
    attempts: int = 0
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status in {"delivered", "skipped", "duplicate"}

    @classmethod
    def delivered(
        cls, *, http_status: int | None = None, detail: str | None = None
    ) -> DeliveryResult:
        return cls("delivered", http_status=http_status, detail=detail)

    @classmethod
    def failed(
        cls,
        error: str,
        *,
        http_status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        detail: str | None = None,
    ) -> DeliveryResult:
        return cls(
            "failed",
            http_status=http_status,
            error=error,
            retryable=retryable,
            retry_after=retry_after,
            detail=detail,
        )

    @classmethod
    def from_http(
        cls, status_code: int, error: str, *, retry_after: str | None = None
    ) -> DeliveryResult:
        """A failed result whose retryability follows the HTTP status."""
        return cls.failed(
            error,
            http_status=status_code,
            retryable=retryable_status(status_code),
            retry_after=parse_retry_after(retry_after),
        )


class Notifier(ABC):
    """Sends notifications to one destination (a Slack channel, a Jira project, a URL ...)."""

    name: str = ""

    @abstractmethod
    def send(self, notification: Notification) -> DeliveryResult:
        """Send once; report failures as a failed :class:`DeliveryResult`, never retry."""

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Release clients; the default holds none."""


def retryable_status(status_code: int) -> bool:
    """5xx, 429 (rate limited) and 408 (request timeout) are worth another try."""
    return status_code in {408, 429} or 500 <= status_code <= 599


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date; ``None`` when absent/bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds)


def clean_message(message: str) -> str:
    """A rendered message with its ``@handle`` mentions and the blank lines they leave removed."""
    lines = []
    for line in message.splitlines():
        stripped = _MENTION_TOKEN.sub("", line)
        stripped = re.sub(r"[ \t]{2,}", " ", stripped).strip()
        if stripped:
            lines.append(stripped)
    return "\n".join(lines)


def format_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def event_handles(event: Event) -> tuple[str, ...]:
    """Where an event goes: its handles, else the mentions in its message."""
    return tuple(event.handles) or tuple(mentioned_handles(event.message))


def json_safe(details: Mapping[str, object]) -> dict[str, object]:
    """Details with only JSON-representable values kept as they are, others as text."""
    out: dict[str, object] = {}
    for key, value in details.items():
        if value is None or isinstance(value, bool | int | float | str):
            out[str(key)] = value
        else:
            out[str(key)] = str(value)
    return out


__all__ = [
    "DeliveryResult",
    "DeliveryStatus",
    "Notification",
    "Notifier",
    "ThresholdLines",
    "TimelineEntry",
    "clean_message",
    "event_handles",
    "format_time",
    "format_value",
    "json_safe",
    "parse_retry_after",
    "retryable_status",
]
