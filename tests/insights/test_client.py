"""The insights SDK: batching, unique ids, spooling under a stalled transport, replay order."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from driftloop.errors import ConflictError, InvalidInputError
from driftloop.insights import (
    InsightsClient,
    configure_insights,
    default_insights_client,
    report_insights,
    shutdown_insights,
)
from driftloop.metrics.points import MetricPoint, PointBatch
from driftloop.testing.transports import MemoryTransport
from waiting import wait_for


@pytest.fixture
def transport() -> MemoryTransport:
    return MemoryTransport()


@pytest.fixture
def client(tmp_path: Path, transport: MemoryTransport) -> Iterator[InsightsClient]:
    insights = InsightsClient(
        transport,
        outbox=tmp_path / "outbox",
        batch_size=50,
        flush_interval=0.01,
        max_retry_interval=0.05,
        start=False,
    )
    yield insights
    insights.close()


def test_report_flushes_points_with_tags_and_unique_ids(
    client: InsightsClient, transport: MemoryTransport
) -> None:
    client.report(
        {"model_confidence": 0.9, "text_length": 12}, {"model": "m", "class": "a"}, timestamp=100.0
    )
    client.report({"model_confidence": np.float64(0.4)}, {"model": "m"})
    assert client.flush()
    published = transport.points
    assert [(p.name, p.value) for p in published] == [
        ("model_confidence", 0.9),
        ("text_length", 12.0),
        ("model_confidence", 0.4),
    ]
    assert published[0].tags == {"model": "m", "class": "a"}
    assert published[0].timestamp == 100.0
    assert abs(published[2].timestamp - time.time()) < 5
    ids = [p.point_id for p in published]
    assert None not in ids
    assert len(set(ids)) == 3
    stats = client.stats
    assert (stats.reported, stats.published, stats.spooled, stats.dropped) == (3, 3, 0, 0)


def test_a_flush_hands_over_columns_with_one_checked_copy_of_each_tags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published: list[object] = []

    class Recording(MemoryTransport):
        def publish(self, points: Sequence[MetricPoint]) -> None:
            published.append(points)
            super().publish(points)

    client = InsightsClient(Recording(), outbox=tmp_path / "outbox", start=False)
    caller_tags = {"model": "m", "version": "1"}
    for i in range(3):
        client.report({"a": i, "b": 0.5}, dict(caller_tags))  # a new dict each call
    client.report({"a": 9}, caller_tags)
    caller_tags["model"] = "changed after the report"
    client.report({"a": 10}, {"version": "1", "model": "m"})  # other order: its own copy
    assert client.flush()
    [batch] = published
    assert isinstance(batch, PointBatch)
    assert batch.names == ["a", "b"] * 3 + ["a", "a"]
    assert [float(v) for v in batch.values] == [0, 0.5, 1, 0.5, 2, 0.5, 9, 10]
    first = batch.tags[0]
    assert first == {"model": "m", "version": "1"}
    assert all(tags is first for tags in batch.tags[:7])
    assert batch.tags[7] == first
    assert batch.tags[7] is not first
    assert [p.value for p in batch] == [0.0, 0.5, 1.0, 0.5, 2.0, 0.5, 9.0, 10.0]
    client.close()

    # a process with ever-new tag values keeps a bounded set of copies
    monkeypatch.setattr("driftloop.insights.client._SHARED_TAGS_LIMIT", 10)
    client = InsightsClient(MemoryTransport(), outbox=tmp_path / "outbox2", start=False)
    for i in range(35):
        client.report({"a": 1.0}, {"request": str(i)})
    assert len(client._shared_tags) <= 10
    assert client.flush()
    assert [p.tags["request"] for p in client.transport.points] == [  # type: ignore[attr-defined]
        str(i) for i in range(35)
    ]
    client.close()


def test_batches_respect_batch_size(client: InsightsClient, transport: MemoryTransport) -> None:
    for i in range(120):
        client.report({"x": i})
    client.flush()
    assert [len(b) for b in transport.batches] == [50, 50, 20]


@pytest.mark.parametrize(
    ("values", "tags", "message"),
    [
        ({"x": "0.5"}, None, "expected a number"),
        ({"x": math.nan}, None, "not a finite number"),
        ({"x": math.inf}, None, "not a finite number"),
        ({"x": None}, None, "expected a number"),
        ({1: 0.5}, None, "not a string"),
        ({"x": 0.5}, {"model": 3}, "tags map str to str"),
        ({"x": 0.5}, {"model": ["a"]}, "tags map str to str"),  # unhashable
        ({"x": 0.5}, 5, "tags map str to str"),  # not a mapping
    ],
)
def test_bad_input_is_refused_at_the_call(
    client: InsightsClient,
    values: dict[object, object],
    tags: dict[str, object] | None,
    message: str,
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        client.report(values, tags)  # type: ignore[arg-type]
    assert client.queue_depth == 0


def test_stalled_transport_spools_then_replays_every_point_in_order(
    client: InsightsClient, transport: MemoryTransport
) -> None:
    transport.down = True
    for i in range(130):
        client.report({"seq": i})
    assert client.flush() is False
    stats = client.stats
    assert stats.spooled == 130
    assert stats.outbox_pending == 130
    assert stats.published == 0
    assert not stats.transport_healthy
    for i in range(130, 150):  # queued behind the outbox while it is not empty
        client.report({"seq": i})
    client.flush()

    transport.down = False
    assert client.flush() is True
    assert [p.value for p in transport.points] == [float(i) for i in range(150)]
    stats = client.stats
    assert stats.replayed == 150
    assert stats.published == 150
    assert stats.outbox_pending == 0
    assert stats.dropped == 0
    assert stats.transport_healthy


def test_background_thread_recovers_after_the_transport_returns(
    tmp_path: Path, transport: MemoryTransport
) -> None:
    transport.fail_next = 3
    with InsightsClient(
        transport,
        outbox=tmp_path / "outbox",
        batch_size=10,
        flush_interval=0.01,
        max_retry_interval=0.02,
    ) as insights:
        for i in range(95):
            insights.report({"seq": i})
        wait_for(lambda: insights.stats.published == 95, 30, "95 points published")
        assert transport.failures == 3
        assert sorted(p.value for p in transport.points) == [float(i) for i in range(95)]
        assert insights.stats.spooled == insights.stats.replayed > 0
        assert insights.stats.dropped == 0


def test_full_queue_overflows_to_the_outbox_not_the_floor(
    tmp_path: Path, transport: MemoryTransport
) -> None:
    insights = InsightsClient(
        transport, outbox=tmp_path / "outbox", queue_size=5, batch_size=100, start=False
    )
    for i in range(20):
        insights.report({"seq": i})
    assert insights.queue_depth == 5
    assert insights.stats.spooled == 15
    assert insights.outbox.pending == 15
    assert insights.flush()
    assert sorted(p.value for p in transport.points) == [float(i) for i in range(20)]
    overflowed = [p.value for p in transport.points[:15]]
    assert overflowed == [float(i) for i in range(5, 20)]  # the outbox replays in write order
    assert insights.stats.dropped == 0
    insights.close()


class HeldTransport(MemoryTransport):
    """A transport whose publish blocks until ``release`` is set (a broker that hangs)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def publish(self, points: Sequence[MetricPoint]) -> None:
        self.entered.set()
        assert self.release.wait(60), "the held publish was never released"
        super().publish(points)


def test_report_never_waits_for_a_stalled_transport(tmp_path: Path) -> None:
    """2,000 reports all return while the flush thread is provably stuck inside a publish
    (no timing bound: a report that waited for the transport would never return)."""
    held = HeldTransport()
    insights = InsightsClient(held, outbox=tmp_path / "outbox", batch_size=10, flush_interval=0.01)
    insights.report({"warm": 1})
    assert held.entered.wait(10)  # the flush thread is now inside the held publish

    def report_all() -> None:
        for i in range(2000):
            insights.report({"seq": i}, {"model": "m"})

    reporter = threading.Thread(target=report_all)
    reporter.start()
    reporter.join(30)
    assert not reporter.is_alive(), "report waited for the stalled transport"
    assert held.batches == []  # the publish is still stuck meanwhile
    held.release.set()
    insights.close(flush=False)
    assert insights.stats.dropped == 0


def test_close_spools_what_cannot_be_published_and_a_new_client_replays_it(tmp_path: Path) -> None:
    down = MemoryTransport()
    down.down = True
    first = InsightsClient(down, outbox=tmp_path / "outbox", start=False)
    for i in range(7):
        first.report({"seq": i})
    first.close()
    assert first.stats.spooled == 7
    with pytest.raises(ConflictError, match="closed"):
        first.report({"seq": 99})

    up = MemoryTransport()
    second = InsightsClient(up, outbox=tmp_path / "outbox", start=False)
    assert second.outbox.pending == 7
    assert second.flush()
    assert [p.value for p in up.points] == [float(i) for i in range(7)]
    assert len({p.point_id for p in up.points}) == 7
    second.close()


def test_module_level_report_insights_uses_the_configured_client(tmp_path: Path) -> None:
    transport = MemoryTransport()
    insights = InsightsClient(transport, outbox=tmp_path / "outbox", start=False)
    try:
        assert configure_insights(client=insights) is insights
        assert default_insights_client() is insights
        report_insights({"model_confidence": 0.5}, {"model": "m"}, timestamp=5.0)
        insights.flush()
        assert [(p.name, p.value, p.timestamp) for p in transport.points] == [
            ("model_confidence", 0.5, 5.0)
        ]
    finally:
        shutdown_insights()
    assert default_insights_client() is None
    with pytest.raises(ConflictError):
        insights.report({"x": 1})
