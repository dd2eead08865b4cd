"""The conformance suite of notifiers (:class:`~driftloop.notify.base.Notifier`, the
``notifiers.<name>.type`` family).

The subject opens notifiers that send to one destination (a local HTTP server that checks the
documented request, as driftloop's own tests do) and says how many messages that destination
has accepted; where the destination answers over HTTP, it can be told to answer with an error
status. ``secrets`` lists what must never show in a log line or a delivery result (tokens,
webhook URLs, signing keys).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from driftloop.monitors.events import Event, MonitorState
from driftloop.notify.base import DeliveryResult, Notification, Notifier, retryable_status
from driftloop.testing.checks.base import Check, checklist, expect, run_checks

ERROR_STATUSES = (400, 401, 403, 404, 429, 500, 503)
HTTP_CLIENT_LOGGERS = ("httpx", "httpcore", "urllib3")
"""Loggers of HTTP clients, left out of the secrets check: they log each request's URL at INFO
or DEBUG, and driftloop never configures them (``configure_logging`` sets up its own)."""


@dataclass(frozen=True)
class NotifierSubject:
    """A notifier under test and the destination it sends to."""

    open: Callable[[], Notifier]
    """A new notifier that sends to the destination."""
    received: Callable[[], int]
    """How many messages the destination has accepted so far."""
    answer_with: Callable[[int | None], None] | None = None
    """From now on the destination answers every request with this HTTP status (``None``: as
    it normally does). Leave it ``None`` for a notifier with no far side that answers (the log
    notifier): the error checks then only send."""
    secrets: Sequence[str] = ()
    """Strings that must never appear in a log record or a :class:`DeliveryResult`."""


NOTIFIER_CHECKS: list[Check[NotifierSubject]] = []
_check = checklist(NOTIFIER_CHECKS)


def check_notifier(subject: NotifierSubject) -> None:
    """Run every notifier check on ``subject`` (:data:`NOTIFIER_CHECKS`)."""
    run_checks(NOTIFIER_CHECKS, subject)


def sample_notification(
    state: MonitorState = MonitorState.ALERT,
    *,
    previous: MonitorState = MonitorState.WARN,
    incident_id: str | None = None,
) -> Notification:
    """A notification of a new event (its own event id; a new incident unless given) of the
    confidence monitor on model ``review-classifier``."""
    event = Event(
        event_id=f"evt-{uuid.uuid4().hex[:12]}",
        monitor="confidence",
        group={"model": "review-classifier"},
        previous=previous,
        state=state,
        value=0.61,
        threshold=0.7,
        timestamp=1_700_000_000.0,
        incident_id=incident_id or f"inc-{uuid.uuid4().hex[:12]}",
        message="Confidence of review-classifier is 0.61 (below 0.7).",
    )
    return Notification.from_event(event, dashboard_url="https://driftloop.example.com/")


def _send(notifier: Notifier, notification: Notification) -> DeliveryResult:
    result = notifier.send(notification)
    expect(
        isinstance(result, DeliveryResult),
        f"send() returned {type(result).__name__}, not a DeliveryResult",
    )
    return result


@_check
def sends_one_message_per_call(subject: NotifierSubject) -> None:
    """Each send() of one incident's alert, warning and recovery is delivered as one message."""
    notifier = subject.open()
    incident = f"inc-{uuid.uuid4().hex[:12]}"
    try:
        for state, previous in (
            (MonitorState.ALERT, MonitorState.OK),
            (MonitorState.WARN, MonitorState.ALERT),
            (MonitorState.OK, MonitorState.WARN),
        ):
            before = subject.received()
            result = _send(
                notifier, sample_notification(state, previous=previous, incident_id=incident)
            )
            expect(
                result.status == "delivered",
                f"a {state} notification was {result.status}: {result.error}",
            )
            got = subject.received() - before
            expect(got == 1, f"one {state} notification made {got} messages, not 1")
    finally:
        notifier.close()


@_check
def reports_an_error_answer_as_a_failed_result(subject: NotifierSubject) -> None:
    """A 4xx/5xx answer is a failed result with that status, retryable for 429 and 5xx only;
    send() never raises, and the next send after the destination recovers is delivered."""
    answer_with = subject.answer_with
    if answer_with is None:
        return
    notifier = subject.open()
    try:
        for status in ERROR_STATUSES:
            answer_with(status)
            result = _send(notifier, sample_notification())
            expect(result.status == "failed", f"an answer of {status} gave {result.status}")
            expect(
                result.http_status == status,
                f"an answer of {status} was reported as http_status={result.http_status}",
            )
            expect(
                result.retryable == retryable_status(status),
                f"an answer of {status} gave retryable={result.retryable}",
            )
            expect(bool(result.error), f"an answer of {status} gave no error text")
        answer_with(None)
        recovered = _send(notifier, sample_notification())
        expect(
            recovered.status == "delivered",
            f"after the destination recovered: {recovered.status}: {recovered.error}",
        )
    finally:
        answer_with(None)
        notifier.close()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in HTTP_CLIENT_LOGGERS:
            return
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {text}")


@contextmanager
def _every_log_record() -> Iterator[_Records]:
    """Every record of every logger at DEBUG and above while the block runs; levels, handlers
    and propagation are restored afterwards."""
    records = _Records()
    loggers = [logging.getLogger(), logging.getLogger("driftloop")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(records)
        logger.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(records)
            logger.setLevel(level)


@_check
def never_logs_secrets(subject: NotifierSubject) -> None:
    """No secret appears in a log record (DEBUG included) or a delivery result, delivered or
    failed."""
    if not subject.secrets:
        return
    results: list[DeliveryResult] = []
    with _every_log_record() as records:
        notifier = subject.open()
        try:
            results.append(_send(notifier, sample_notification()))
            if subject.answer_with is not None:
                for status in (401, 500):
                    subject.answer_with(status)
                    results.append(_send(notifier, sample_notification()))
        finally:
            if subject.answer_with is not None:
                subject.answer_with(None)
            notifier.close()
    for secret in subject.secrets:
        for line in records.lines:
            expect(secret not in line, f"a log record holds a secret: {line[:300]}")
        for result in results:
            expect(secret not in repr(result), f"a delivery result holds a secret: {result!r}")
