"""The conformance suite of metric stores (:class:`~driftloop.metrics.points.MetricStore`, what
the ``store:`` URL's database holds and every transport delivers into).

The subject opens stores; they may share one database, because every check writes metrics of
a name of its own (``conformance_<random>``). Points lie in the last hour (a
store may keep raw points for a limited time); aggregates are compared with numpy, exactly for
``avg``, ``min``, ``max``, ``sum`` and ``count``, and within two percent in rank and value for
the quantiles (a store may answer them from a sketch).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import get_args

import numpy as np

from driftloop.errors import InvalidInputError
from driftloop.metrics.points import Aggregation, MetricPoint, MetricStore
from driftloop.testing.checks.base import Check, checklist, expect, expect_raises, run_checks

QUANTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0}
EXACT: dict[str, Callable[[np.ndarray], float]] = {
    "avg": lambda v: float(np.mean(v)),
    "min": lambda v: float(np.min(v)),
    "max": lambda v: float(np.max(v)),
    "sum": lambda v: float(np.sum(v)),
}


@dataclass(frozen=True)
class MetricStoreSubject:
    """A metric store under test."""

    open: Callable[[], MetricStore]
    """A store; successive calls may open the same database."""


METRIC_STORE_CHECKS: list[Check[MetricStoreSubject]] = []
_check = checklist(METRIC_STORE_CHECKS)


def check_metric_store(subject: MetricStoreSubject) -> None:
    """Run every metric store check on ``subject`` (:data:`METRIC_STORE_CHECKS`)."""
    run_checks(METRIC_STORE_CHECKS, subject)


def _start() -> float:
    """A whole minute 40 minutes ago: the points of a check lie in the 30 minutes after it."""
    return float(int(time.time() // 60) * 60 - 2_400)


def _metric() -> str:
    return f"conformance_{uuid.uuid4().hex[:12]}"


def _sample(start: float, metric: str, n: int = 400) -> list[MetricPoint]:
    """``n`` points of ``metric`` over 30 minutes, models ``a``/``b``, every third point with a
    ``region`` tag."""
    rng = np.random.default_rng(7)
    stamps = np.sort(start + rng.uniform(0, 1_800, n))
    values = rng.beta(8, 2, n)
    return [
        MetricPoint(
            metric,
            float(value),
            float(stamp),
            {"model": "ab"[i % 2], **({"region": "eu"} if i % 3 == 0 else {})},
            f"{metric}-{i}",
        )
        for i, (stamp, value) in enumerate(zip(stamps, values, strict=True))
    ]


def _values(
    points: Sequence[MetricPoint],
    start: float,
    end: float,
    keep: Callable[[MetricPoint], bool] = lambda _p: True,
) -> np.ndarray:
    return np.array([p.value for p in points if start <= p.timestamp < end and keep(p)])


def _expect_aggregate(got: float | None, values: np.ndarray, aggregation: str) -> None:
    expect(got is not None, f"{aggregation} of {len(values)} points is None")
    assert got is not None
    if aggregation == "count":
        expect(got == len(values), f"count is {got}, numpy counts {len(values)}")
    elif aggregation in EXACT:
        want = float(EXACT[aggregation](values))
        expect(
            math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12),
            f"{aggregation} is {got}, numpy says {want}",
        )
    else:
        q = QUANTILES[aggregation]
        low = float(np.percentile(values, max(0.0, q - 2))) * 0.98
        high = float(np.percentile(values, min(100.0, q + 2))) * 1.02
        expect(low <= got <= high, f"{aggregation} is {got}, numpy puts it in [{low}, {high}]")


@_check
def counts_new_points_and_skips_repeated_ids(subject: MetricStoreSubject) -> None:
    """write() returns how many points were new; a point written again (same id) is skipped."""
    store, start, metric = subject.open(), _start(), _metric()
    points = _sample(start, metric, 60)
    expect(store.write(points) == 60, "a first write of 60 points did not count 60")
    expect(store.write(points) == 0, "writing the same 60 points again counted some as new")
    more = [
        MetricPoint(metric, 0.5, start + 10, {"model": "a"}, f"{metric}-new-{i}") for i in range(5)
    ]
    written = store.write(points[:10] + more)
    expect(written == 5, f"10 repeated and 5 new points counted {written} new")
    [result] = store.query(metric, "count", start, start + 1_800)
    expect(result.count == 65, f"the store holds {result.count} points, not 65")
    expect(store.write([]) == 0, "an empty write did not return 0")


@_check
def aggregates_like_numpy(subject: MetricStoreSubject) -> None:
    """Every aggregation over a window matches numpy (quantiles within two percent)."""
    store, start, metric = subject.open(), _start(), _metric()
    points = _sample(start, metric)
    store.write(points)
    window = (start + 123.5, start + 1_500.25)
    values = _values(points, *window)
    for aggregation in get_args(Aggregation):
        [result] = store.query(metric, aggregation, *window)
        expect(
            result.count == len(values),
            f"{aggregation}: count {result.count}, numpy counts {len(values)}",
        )
        _expect_aggregate(result.value, values, aggregation)


@_check
def windows_are_half_open(subject: MetricStoreSubject) -> None:
    """A point at ``start`` is in the window, a point at ``end`` is not."""
    store, start, metric = subject.open(), _start(), _metric()
    store.write(
        [
            MetricPoint(metric, 1.0, start, {}, f"{metric}-at-start"),
            MetricPoint(metric, 2.0, start + 60, {}, f"{metric}-at-end"),
        ]
    )
    [result] = store.query(metric, "sum", start, start + 60)
    expect(
        (result.count, result.value) == (1, 1.0),
        f"[start, end) held count={result.count}, sum={result.value}",
    )
    found = [p.point_id for p in store.points(metric, start, start + 60)]
    expect(found == [f"{metric}-at-start"], f"points() of [start, end) gave {found}")


@_check
def filters_and_groups_by_tags(subject: MetricStoreSubject) -> None:
    """A filter keeps the series whose tags match (``None``: the tag is absent); ``group_by``
    gives one result per group."""
    store, start, metric = subject.open(), _start(), _metric()
    points = _sample(start, metric)
    store.write(points)
    end = start + 1_800
    [only_a] = store.query(metric, "avg", start, end, filter={"model": "a"})
    _expect_aggregate(
        only_a.value, _values(points, start, end, lambda p: p.tags["model"] == "a"), "avg"
    )
    [no_region] = store.query(metric, "count", start, end, filter={"region": None})
    expect(
        no_region.count == sum("region" not in p.tags for p in points),
        f"filter region=None counted {no_region.count}",
    )
    grouped = store.query(metric, "max", start, end, group_by=["model"])
    groups = sorted(dict(result.group)["model"] for result in grouped)
    expect(groups == ["a", "b"], f"group_by model gave groups {groups}")
    for result in grouped:
        model = dict(result.group)["model"]
        in_group = [p for p in points if p.tags["model"] == model]
        _expect_aggregate(result.value, _values(in_group, start, end), "max")


@_check
def an_empty_window_has_no_value(subject: MetricStoreSubject) -> None:
    """A window without points gives no value (count 0); an empty window is refused."""
    store, start, metric = subject.open(), _start(), _metric()
    store.write(_sample(start, metric, 20))
    for result in store.query(metric, "avg", start - 600, start):
        expect(
            result.count == 0 and result.value is None,
            f"a window before every point gave count={result.count}, value={result.value}",
        )
    unmatched = store.query(metric, "avg", start, start + 1_800, filter={"model": "z"})
    expect(all(r.count == 0 for r in unmatched), "a filter no series matches gave points")
    expect_raises(
        InvalidInputError,
        lambda: store.query(metric, "avg", start, start),
        "a query of an empty window (start == end)",
    )


@_check
def returns_raw_points_oldest_first(subject: MetricStoreSubject) -> None:
    """points() gives the window's points oldest first with value, tags and id; earliest()
    the first one's time."""
    store, start, metric = subject.open(), _start(), _metric()
    points = _sample(start, metric, 50)
    store.write(list(reversed(points)))
    window = (start + 300.0, start + 1_200.0)
    got = store.points(metric, *window)
    want = [p for p in points if window[0] <= p.timestamp < window[1]]
    expect(
        [p.point_id for p in got] == [p.point_id for p in want],
        "points() is not the window's points, oldest first",
    )
    for mine, stored in zip(want, got, strict=True):
        expect(
            (stored.value, stored.timestamp, dict(stored.tags))
            == (mine.value, mine.timestamp, dict(mine.tags)),
            f"point {mine.point_id} came back as {stored}",
        )
    expect(
        store.earliest(metric, *window) == want[0].timestamp,
        "earliest() is not the first point's time",
    )


@_check
def buckets_a_series(subject: MetricStoreSubject) -> None:
    """series() buckets the window by ``step``: counts add up, min <= avg <= max, time order."""
    store, start, metric = subject.open(), _start(), _metric()
    points = _sample(start, metric)
    store.write(points)
    buckets = store.series(metric, start, start + 1_800, 300.0)
    expect(
        sum(b.count for b in buckets) == len(points),
        f"the buckets hold {sum(b.count for b in buckets)} points of {len(points)}",
    )
    stamps = [b.timestamp for b in buckets]
    expect(
        stamps == sorted(stamps) and len(set(stamps)) == len(stamps),
        "buckets are not in time order",
    )
    for bucket in buckets:
        expect(
            bucket.min <= bucket.avg <= bucket.max,
            f"a bucket has min {bucket.min}, avg {bucket.avg}, max {bucket.max}",
        )


@_check
def refuses_bad_points_and_keeps_the_batch_out(subject: MetricStoreSubject) -> None:
    """A batch with a non-finite value is an InvalidInputError, and none of it is stored."""
    store, start, metric = subject.open(), _start(), _metric()
    batch = [
        MetricPoint(metric, 1.0, start, {}, f"{metric}-good"),
        MetricPoint(metric, math.nan, start, {}, f"{metric}-bad"),
    ]
    expect_raises(InvalidInputError, lambda: store.write(batch), "writing a NaN value")
    [result] = store.query(metric, "count", start - 60, start + 60)
    expect(result.count == 0, f"a refused batch left {result.count} points")
