"""The conformance suite of insight transports (:class:`~driftloop.insights.Transport`).

A transport is only half of a delivery: the suite needs the far side too. A
:class:`TransportSubject` opens transports to one destination and reads back, in arrival order,
every point that destination received (a listener of the ingest side: the local transport's
listeners, a Kafka ingest worker's, a server's insights client). Each check writes points under
a metric name of its own, so checks can share one destination.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from driftloop.insights.transports import Transport
from driftloop.metrics.points import MetricPoint
from driftloop.testing.checks.base import Check, checklist, expect, run_checks, wait_until

KEYS = ("alpha", "beta", "gamma")


@dataclass(frozen=True)
class TransportSubject:
    """A transport under test and the destination it delivers to."""

    open: Callable[[], Transport]
    """A new transport to the destination (called again after a close, to check reopening)."""
    received: Callable[[], Sequence[MetricPoint]]
    """Every point the destination has received so far, in the order it received them."""
    timeout: float = 15.0
    """How long a check waits for points to arrive (a broker delivers asynchronously)."""
    key_tag: str = "model"
    """The tag that keys the order: points of one key arrive in the order they were sent."""
    large_batch: int = 500
    """The size of the batch :func:`delivers_a_large_batch_whole` sends: make it more than one
    message or request of the transport holds."""


TRANSPORT_CHECKS: list[Check[TransportSubject]] = []
_check = checklist(TRANSPORT_CHECKS)


def check_transport(subject: TransportSubject) -> None:
    """Run every transport check on ``subject`` (:data:`TRANSPORT_CHECKS`)."""
    run_checks(TRANSPORT_CHECKS, subject)


def _points(
    subject: TransportSubject, metric: str, count: int, *, first: int = 0
) -> list[MetricPoint]:
    """``count`` points of ``metric`` spread over :data:`KEYS`, values ``first, first+1, ...``;
    timestamps 1/64 s apart over the last two minutes (exact in every wire format)."""
    base = float(int(time.time()) - 120)
    return [
        MetricPoint(
            metric,
            float(first + i),
            base + (first + i) / 64,
            {subject.key_tag: KEYS[i % len(KEYS)], "check": "conformance"},
            f"{metric}-{first + i}",
        )
        for i in range(count)
    ]


def _arrived(subject: TransportSubject, metric: str) -> list[MetricPoint]:
    return [point for point in subject.received() if point.name == metric]


def _expect_delivered(subject: TransportSubject, metric: str, sent: Sequence[MetricPoint]) -> None:
    """Every sent point arrives once, with its fields, in the order sent per key."""
    wait_until(
        lambda: len({p.point_id for p in _arrived(subject, metric)}) >= len(sent),
        subject.timeout,
        f"{len(sent)} points of {metric} to arrive",
    )
    arrived = _arrived(subject, metric)
    ids = [point.point_id for point in arrived]
    twice = sorted({i for i in ids if ids.count(i) > 1}, key=str)
    expect(not twice, f"points delivered more than once: {twice[:5]}")
    unexpected = set(ids) - {point.point_id for point in sent}
    expect(
        not unexpected, f"points arrived that were never sent: {sorted(map(str, unexpected))[:5]}"
    )
    by_id = {point.point_id: point for point in arrived}
    for point in sent:
        got = by_id[point.point_id]
        expect(
            (got.name, got.value, got.timestamp, dict(got.tags))
            == (point.name, point.value, point.timestamp, dict(point.tags)),
            f"point {point.point_id} arrived as {got}, sent as {point}",
        )
    order: dict[str, list[str | None]] = defaultdict(list)
    for point in arrived:
        order[point.tags[subject.key_tag]].append(point.point_id)
    for key, got_ids in order.items():
        want = [p.point_id for p in sent if p.tags[subject.key_tag] == key]
        expect(
            got_ids == want,
            f"the points of {subject.key_tag}={key} arrived out of order: "
            f"{got_ids[:8]}... for {want[:8]}...",
        )


def _metric() -> str:
    return f"conformance_{uuid.uuid4().hex[:12]}"


@_check
def delivers_every_point_once_in_order_per_key(subject: TransportSubject) -> None:
    """Delivers every point once, with its value, time, tags and id, in order per key."""
    metric = _metric()
    sent = _points(subject, metric, 60)
    transport = subject.open()
    try:
        for start in range(0, len(sent), 20):
            transport.publish(sent[start : start + 20])
    finally:
        transport.close()
    _expect_delivered(subject, metric, sent)


@_check
def an_empty_batch_is_a_no_op(subject: TransportSubject) -> None:
    """Publishing an empty batch raises nothing and delivers nothing."""
    metric = _metric()
    sent = _points(subject, metric, 3)
    transport = subject.open()
    try:
        transport.publish([])
        transport.publish(sent)
        transport.publish([])
    finally:
        transport.close()
    _expect_delivered(subject, metric, sent)


@_check
def survives_close_and_reopen(subject: TransportSubject) -> None:
    """A transport closed (twice: close is idempotent) and opened again goes on delivering."""
    metric = _metric()
    before, after = _points(subject, metric, 9), _points(subject, metric, 9, first=9)
    first = subject.open()
    first.publish(before)
    first.close()
    first.close()
    second = subject.open()
    try:
        second.publish(after)
    finally:
        second.close()
    _expect_delivered(subject, metric, before + after)


@_check
def delivers_a_large_batch_whole(subject: TransportSubject) -> None:
    """A batch larger than one message or request holds arrives whole."""
    metric = _metric()
    sent = _points(subject, metric, subject.large_batch)
    transport = subject.open()
    try:
        transport.publish(sent)
    finally:
        transport.close()
    _expect_delivered(subject, metric, sent)
