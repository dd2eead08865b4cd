"""The on-disk outbox: order, segments, cursor, crash repair, slots, quarantine."""

from __future__ import annotations

from pathlib import Path

import pytest

from driftloop.errors import ConflictError
from driftloop.insights.outbox import Outbox
from driftloop.metrics.points import MetricPoint


def points(start: int, count: int) -> list[MetricPoint]:
    return [
        MetricPoint("seq", float(i), 1000.0 + i, {"model": "m"}, f"id-{i}")
        for i in range(start, start + count)
    ]


def drain(outbox: Outbox, size: int = 4) -> list[MetricPoint]:
    delivered: list[MetricPoint] = []
    while (batch := outbox.read(size)) is not None:
        delivered.extend(batch.points)
        outbox.commit(batch)
    return delivered


def segment_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("segment-*.jsonl"))


def test_points_come_back_in_write_order_across_segments(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, segment_max_points=3)
    outbox.append(points(0, 5))
    outbox.append(points(5, 5))
    assert outbox.pending == 10
    assert len(segment_files(tmp_path)) >= 4
    delivered = drain(outbox, size=4)
    assert delivered == points(0, 10)
    assert outbox.pending == 0
    assert outbox.read(4) is None
    assert len(segment_files(tmp_path)) <= 2  # consumed segments are deleted
    outbox.close()


def test_points_read_back_share_one_mapping_per_distinct_tags(tmp_path: Path) -> None:
    # the metric store resolves each distinct mapping of a batch once, not each point's
    outbox = Outbox(tmp_path)
    outbox.append([*points(0, 3), MetricPoint("seq", 3.0, 1003.0, {"model": "n"}, "id-3")])
    batch = outbox.read(10)
    assert batch is not None
    tags = [point.tags for point in batch.points]
    assert tags == [{"model": "m"}] * 3 + [{"model": "n"}]
    assert tags[0] is tags[1] is tags[2]
    assert tags[3] is not tags[0]
    outbox.close()


def test_uncommitted_batch_is_read_again(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    outbox.append(points(0, 3))
    first = outbox.read(2)
    assert first is not None
    again = outbox.read(2)
    assert again is not None
    assert again.points == first.points == points(0, 2)
    outbox.close()


def test_cursor_survives_reopening(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, segment_max_points=4)
    outbox.append(points(0, 10))
    batch = outbox.read(6)
    assert batch is not None
    outbox.commit(batch)
    outbox.close()

    reopened = Outbox(tmp_path, segment_max_points=4)
    assert reopened.pending == 4
    reopened.append(points(10, 2))
    assert drain(reopened) == points(6, 6)
    reopened.close()


def test_partial_last_line_from_a_crash_is_cut(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    outbox.append(points(0, 2))
    outbox.close()
    segment = tmp_path / segment_files(tmp_path)[-1]
    with segment.open("ab") as handle:
        handle.write(b'{"id":"torn","n":"seq","v":')
    reopened = Outbox(tmp_path)
    assert reopened.pending == 2
    reopened.append(points(2, 1))
    assert drain(reopened) == points(0, 3)
    reopened.close()


def test_unreadable_line_is_quarantined_not_lost(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    outbox.append(points(0, 1))
    outbox.close()
    segment = tmp_path / segment_files(tmp_path)[-1]
    with segment.open("ab") as handle:
        handle.write(b"not json\n")
    reopened = Outbox(tmp_path)
    reopened.append(points(1, 1))
    assert reopened.pending == 3
    assert drain(reopened) == points(0, 2)
    assert reopened.pending == 0
    assert (tmp_path / "quarantine.jsonl").read_bytes() == b"not json\n"
    reopened.close()


def test_one_process_per_outbox_and_slots_for_the_others(tmp_path: Path) -> None:
    first = Outbox.open_slot(tmp_path)
    with pytest.raises(ConflictError, match="in use"):
        Outbox(tmp_path / "slot-0")
    second = Outbox.open_slot(tmp_path)
    assert first.directory.name == "slot-0"
    assert second.directory.name == "slot-1"
    first.close()
    again = Outbox.open_slot(tmp_path)
    assert again.directory.name == "slot-0"
    second.close()
    again.close()


def test_closed_outbox_refuses_writes(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    outbox.close()
    with pytest.raises(ConflictError, match="closed"):
        outbox.append(points(0, 1))
