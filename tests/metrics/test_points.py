"""PointBatch: the columnar batch the SDK hands its transport, seen as a sequence of points."""

from __future__ import annotations

import pytest

from driftloop.metrics.points import MetricPoint, PointBatch


def test_a_point_batch_reads_as_the_points_it_holds() -> None:
    tags = {"model": "m"}
    batch = PointBatch(
        ["a", "b", "c"], [1, 2.5, 3.0], [10.0, 11.0, 12.0], [tags, tags, {}], ["i1", "i2", None]
    )
    points = [
        MetricPoint("a", 1.0, 10.0, tags, "i1"),
        MetricPoint("b", 2.5, 11.0, tags, "i2"),
        MetricPoint("c", 3.0, 12.0, {}, None),
    ]
    assert len(batch) == 3
    assert list(batch) == points
    assert batch[1] == points[1]
    assert batch[-1] == points[2]
    assert type(batch[0].value) is float  # an int reported stays a number of one type downstream
    tail = batch[1:]
    assert isinstance(tail, PointBatch)
    assert list(tail) == points[1:]
    assert list(reversed(batch)) == points[::-1]
    assert points[2] in batch
    assert batch.index(points[1]) == 1
    assert PointBatch.of(batch) is batch
    assert list(PointBatch.of(points)) == points
    assert list(PointBatch.of(iter(points))) == points
    assert repr(batch) == "PointBatch(3 points)"
    with pytest.raises(IndexError):
        batch[3]
    with pytest.raises(ValueError, match="one length"):
        PointBatch(["a"], [1.0, 2.0], [1.0], [{}], [None])
