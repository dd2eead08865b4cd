"""Query planning and quantiles: which parts of a window are read from raw points, the minute
rollups and the hour rollups, the statements that read them, and how their count/sum/min/max
and sketch bins merge into one answer per group.

Queries over short, recent windows read raw points; long windows (or windows older than the raw
retention) read whole hours from the hour rollups, the remaining whole minutes from the minute
rollups and the partial minutes at the edges from raw points, so count, sum, min, max and avg
stay exact, and percentiles, merged from the same bins either way, are within the sketch's 0.5 %
relative accuracy.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.engine import Connection

from driftloop.metrics.points import SeriesPoint
from driftloop.metrics.sketch import encode_bins, merge_bins, sketch_quantile, unpack_sketch
from driftloop.metrics.sql.rows import HOUR, MINUTE, PER_HOUR, chunks, matrix
from driftloop.metrics.tables import (
    metric_hour_rollups,
    metric_points,
    metric_rollup_bins,
    metric_rollups,
)

Resolution = Literal["auto", "raw", "rollup"]
QUANTILES: dict[str, float] = {"p50": 0.50, "p90": 0.90, "p99": 0.99}
AGGREGATIONS = ("avg", "min", "max", "sum", "count", "p50", "p90", "p99")


@dataclass(frozen=True, slots=True)
class Plan:
    """Where each part of a window is read from: raw ranges ``[lo, hi)`` in seconds, minute
    rollup ranges ``[m0, m1)`` in minutes and hour rollup ranges ``[h0, h1)`` in hours since
    the epoch. The ranges never overlap."""

    raw: tuple[tuple[float, float], ...] = ()
    minutes: tuple[tuple[int, int], ...] = ()
    hours: tuple[tuple[int, int], ...] = ()

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.raw), len(self.minutes), len(self.hours)

    def parameters(self, ids: Sequence[int]) -> dict[str, Any]:
        """The bound values of the statements built for this plan's :attr:`shape`."""
        values: dict[str, Any] = {"ids": list(ids)}
        for kind, ranges in (("raw", self.raw), ("minute", self.minutes), ("hour", self.hours)):
            for index, (lo, hi) in enumerate(ranges):
                values[f"{kind}_lo_{index}"] = lo
                values[f"{kind}_hi_{index}"] = hi
        return values


def use_rollups(
    start: float,
    end: float,
    resolution: Resolution,
    horizons: tuple[float, float],
    raw_query_limit: float,
) -> bool:
    """Whether ``[start, end)`` is read from the rollups: forced by ``resolution``, else when
    the window is longer than ``raw_query_limit`` or begins before the raw horizon."""
    if resolution == "raw":
        return False
    if resolution == "rollup":
        return True
    if end - start > raw_query_limit:
        return True
    return start < horizons[0]


def plan_window(
    start: float, end: float, horizons: tuple[float, float], *, hours: bool = True
) -> Plan:
    """Raw edge ranges, whole minutes and whole hours for ``[start, end)``: edges older than
    the raw horizon widen to their whole minute; whole hours come from the hour rollups
    (when ``hours``) except those that began before the rollup horizon's minute, whose
    surviving minutes are read from the minute rollups as if there were no hour rollups."""
    raw_horizon, rollup_horizon = horizons
    m0, m1 = math.ceil(start / MINUTE), math.floor(end / MINUTE)
    edges: list[tuple[float, float]] = []
    if m0 >= m1:
        if start >= raw_horizon:
            return Plan(raw=((start, end),))
        m0, m1 = math.floor(start / MINUTE), math.ceil(end / MINUTE)
    else:
        if start < m0 * MINUTE:
            if start >= raw_horizon:
                edges.append((start, m0 * MINUTE))
            else:
                m0 -= 1
        if m1 * MINUTE < end:
            if m1 * MINUTE >= raw_horizon:
                edges.append((m1 * MINUTE, end))
            else:
                m1 += 1
    h0, h1 = -(-m0 // PER_HOUR), m1 // PER_HOUR
    if math.isfinite(rollup_horizon):
        purged_before = math.floor(rollup_horizon / MINUTE)  # minutes below are purged
        h0 = max(h0, -(-purged_before // PER_HOUR))
    if not hours or h1 <= h0:
        return Plan(raw=tuple(edges), minutes=((m0, m1),))
    minutes = tuple((lo, hi) for lo, hi in ((m0, h0 * PER_HOUR), (h1 * PER_HOUR, m1)) if hi > lo)
    return Plan(raw=tuple(edges), minutes=minutes, hours=((h0, h1),))


def _between(column: sa.ColumnElement[Any], kind: str, index: int) -> sa.ColumnElement[bool]:
    return sa.and_(
        column >= sa.bindparam(f"{kind}_lo_{index}"), column < sa.bindparam(f"{kind}_hi_{index}")
    )


def _ids() -> sa.BindParameter[int]:
    return sa.bindparam("ids", type_=sa.Integer, expanding=True)


def _union(parts: Sequence[sa.Select[Any]]) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    return parts[0] if len(parts) == 1 else sa.union_all(*parts)


# Statements are built once per plan shape with bound parameters (``Plan.parameters``), so a
# query costs SQLAlchemy a cache lookup instead of building and hashing a new expression tree.


@functools.cache
def _stats_statement(raw: int, minutes: int, hours: int) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    """series_id, count, sum, min, max: one row per series and part of the plan."""
    p, r, h = metric_points.c, metric_rollups.c, metric_hour_rollups.c
    ids = _ids()
    parts = [
        sa.select(
            p.series_id,
            sa.func.count(),
            sa.func.sum(p.value),
            sa.func.min(p.value),
            sa.func.max(p.value),
        )
        .where(p.series_id.in_(ids), _between(p.timestamp, "raw", i))
        .group_by(p.series_id)
        for i in range(raw)
    ]
    for table, column, kind, count in (
        (r, r.minute, "minute", minutes),
        (h, h.hour, "hour", hours),
    ):
        parts.extend(
            sa.select(
                table.series_id,
                sa.func.sum(table.count),
                sa.func.sum(table.sum),
                sa.func.min(table.min),
                sa.func.max(table.max),
            )
            .where(table.series_id.in_(ids), _between(column, kind, i))
            .group_by(table.series_id)
            for i in range(count)
        )
    return _union(parts)


@functools.cache
def _raw_values_statement(raw: int) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    p = metric_points.c
    ids = _ids()
    return _union(
        [
            sa.select(p.series_id, p.value).where(
                p.series_id.in_(ids), _between(p.timestamp, "raw", i)
            )
            for i in range(raw)
        ]
    )


@functools.cache
def _minute_bins_statement(minutes: int) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    b = metric_rollup_bins.c
    ids = _ids()
    return _union(
        [
            sa.select(b.series_id, b.bin, sa.func.sum(b.count))
            .where(b.series_id.in_(ids), _between(b.minute, "minute", i))
            .group_by(b.series_id, b.bin)
            for i in range(minutes)
        ]
    )


@functools.cache
def _hour_sketches_statement(hours: int) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    h = metric_hour_rollups.c
    ids = _ids()
    return _union(
        [
            sa.select(h.series_id, h.sketch).where(
                h.series_id.in_(ids), _between(h.hour, "hour", i)
            )
            for i in range(hours)
        ]
    )


@dataclass(slots=True)
class Stats:
    """count/sum/min/max that merge across series, minutes and window edges."""

    count: int = 0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def add(self, count: int, total: float, low: float, high: float) -> None:
        if count <= 0:
            return
        self.count += count
        self.total += total
        self.low = min(self.low, low)
        self.high = max(self.high, high)

    def value(self, aggregation: str) -> float | None:
        if aggregation == "count":
            return float(self.count)
        if self.count == 0:
            return None
        if aggregation == "avg":
            return self.total / self.count
        if aggregation == "sum":
            return self.total
        if aggregation == "min":
            return self.low
        return self.high


GroupKey = tuple[str, ...]


def group_series(
    series: Mapping[int, Mapping[str, str]], group_by: Sequence[str]
) -> dict[int, GroupKey]:
    """series id → group key; series lacking a group-by tag belong to no group."""
    groups: dict[int, GroupKey] = {}
    for series_id, tags in series.items():
        key = tuple(tags.get(tag) for tag in group_by)
        if all(part is not None for part in key):
            groups[series_id] = key  # type: ignore[assignment]
    return groups


def read_stats(
    connection: Connection, groups: Mapping[int, GroupKey], plan: Plan
) -> dict[GroupKey, Stats]:
    """count/sum/min/max per group: one ``UNION ALL`` statement per chunk of series."""
    stats: dict[GroupKey, Stats] = {}
    if not any(plan.shape):
        return stats
    statement = _stats_statement(*plan.shape)
    for chunk in chunks(sorted(groups)):
        for sid, count, total, low, high in connection.execute(
            statement, plan.parameters(chunk)
        ).all():
            if count:
                key = groups[int(sid)]
                stats.setdefault(key, Stats()).add(
                    int(count), float(total), float(low), float(high)
                )
    return stats


def _raw_values(
    connection: Connection, ids: Sequence[int], plan: Plan
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """(series id, value) of every raw point in the plan's raw ranges."""
    sids: list[int] = []
    values: list[float] = []
    if plan.raw:
        statement = _raw_values_statement(len(plan.raw))
        for chunk in chunks(ids):
            for sid, value in connection.execute(statement, plan.parameters(chunk)).all():
                sids.append(sid)
                values.append(value)
    return np.asarray(sids, dtype=np.int64), np.asarray(values, dtype=np.float64)


def _split_by_group(
    groups: Mapping[int, GroupKey], sids: NDArray[np.int64], values: NDArray[np.float64]
) -> dict[GroupKey, NDArray[np.float64]]:
    by_group: dict[GroupKey, list[int]] = {}
    for sid in np.unique(sids).tolist():
        by_group.setdefault(groups[sid], []).append(sid)
    return {key: values[np.isin(sids, members)] for key, members in by_group.items()}


class _Bins:
    """Sketch bins and counts per group, gathered from minute bin rows, hour sketches and raw
    edges; a bin may repeat across pieces (merged by :func:`merge_bins`)."""

    def __init__(self) -> None:
        self.bins: dict[GroupKey, list[NDArray[np.int64]]] = {}
        self.counts: dict[GroupKey, list[NDArray[np.int64]]] = {}

    def add(self, key: GroupKey, bins: NDArray[np.int64], counts: NDArray[np.int64]) -> None:
        self.bins.setdefault(key, []).append(bins)
        self.counts.setdefault(key, []).append(counts)

    def read_rollups(
        self, connection: Connection, groups: Mapping[int, GroupKey], ids: Sequence[int], plan: Plan
    ) -> None:
        for chunk in chunks(ids):
            parameters = plan.parameters(chunk)
            if plan.minutes:
                rows = connection.execute(
                    _minute_bins_statement(len(plan.minutes)), parameters
                ).all()
                if rows:
                    data = matrix(rows, 3, np.int64)
                    for sid in np.unique(data[:, 0]).tolist():
                        mine = data[data[:, 0] == sid]
                        self.add(groups[sid], mine[:, 1], mine[:, 2])
            if plan.hours:
                sketches: dict[int, list[bytes]] = {}
                for sid, sketch in connection.execute(
                    _hour_sketches_statement(len(plan.hours)), parameters
                ).all():
                    sketches.setdefault(int(sid), []).append(bytes(sketch))
                for sid, parts in sketches.items():
                    self.add(groups[sid], *unpack_sketch(b"".join(parts)))

    def merged(self, key: GroupKey) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        return merge_bins(np.concatenate(self.bins[key]), np.concatenate(self.counts[key]))


def read_quantiles(
    connection: Connection, groups: Mapping[int, GroupKey], plan: Plan, q: float
) -> dict[GroupKey, tuple[float | None, int]]:
    """The ``q`` quantile and the count per group: exact from raw points alone, else from the
    sketch bins, clamped to the exact min and max."""
    ids = sorted(groups)
    results: dict[GroupKey, tuple[float | None, int]] = {}
    if not plan.minutes and not plan.hours:
        sids, values = _raw_values(connection, ids, plan)
        for key, group_values in _split_by_group(groups, sids, values).items():
            results[key] = (float(np.percentile(group_values, q * 100)), len(group_values))
        return results
    stats = read_stats(connection, groups, plan)
    bins = _Bins()
    bins.read_rollups(connection, groups, ids, plan)
    if plan.raw:
        sids, values = _raw_values(connection, ids, plan)
        for key, group_values in _split_by_group(groups, sids, values).items():
            bins.add(key, encode_bins(group_values), np.ones(len(group_values), dtype=np.int64))
    for key in bins.bins:
        group_stats = stats.get(key)
        if group_stats is None or group_stats.count == 0:
            continue
        merged_bins, counts = bins.merged(key)
        value = sketch_quantile(merged_bins, counts, q, low=group_stats.low, high=group_stats.high)
        results[key] = (value, group_stats.count)
    return results


# ---------------------------------------------------------------------- series buckets


class Buckets:
    """count/sum/min/max of the buckets ``[start + k·step, start + (k+1)·step)``."""

    def __init__(self, start: float, end: float, step: float) -> None:
        self.start = start
        self.step = step
        size = math.ceil((end - start) / step)
        self.size = size
        self.count = np.zeros(size, dtype=np.int64)
        self.total = np.zeros(size)
        self.low = np.full(size, np.inf)
        self.high = np.full(size, -np.inf)

    def add(self, data: NDArray[np.float64]) -> None:
        """Rows of (bucket start in seconds, count, sum, min, max)."""
        index = np.clip(((data[:, 0] - self.start) // self.step).astype(np.int64), 0, self.size - 1)
        np.add.at(self.count, index, data[:, 1].astype(np.int64))
        np.add.at(self.total, index, data[:, 2])
        np.minimum.at(self.low, index, data[:, 3])
        np.maximum.at(self.high, index, data[:, 4])

    def add_points(self, data: NDArray[np.float64]) -> None:
        """Rows of (timestamp, value)."""
        ones = np.ones(len(data))
        self.add(np.column_stack((data[:, 0], ones, data[:, 1], data[:, 1], data[:, 1])))

    def read(self, connection: Connection, ids: Sequence[int], plan: Plan) -> None:
        """Add what ``plan`` reads of the series ``ids``."""
        p, r, h = metric_points.c, metric_rollups.c, metric_hour_rollups.c
        for chunk in chunks(ids):
            for lo, hi in plan.raw:
                rows = connection.execute(
                    sa.select(p.timestamp, p.value).where(
                        p.series_id.in_(chunk), p.timestamp >= lo, p.timestamp < hi
                    )
                ).all()
                if rows:
                    self.add_points(matrix(rows, 2, np.float64))
            for table, column, seconds, ranges in (
                (r, r.minute, MINUTE, plan.minutes),
                (h, h.hour, HOUR, plan.hours),
            ):
                for lo_bucket, hi_bucket in ranges:
                    rollup_rows = connection.execute(
                        sa.select(
                            column * seconds, table.count, table.sum, table.min, table.max
                        ).where(table.series_id.in_(chunk), column >= lo_bucket, column < hi_bucket)
                    ).all()
                    if rollup_rows:
                        self.add(matrix(rollup_rows, 5, np.float64))

    def points(self) -> list[SeriesPoint]:
        """The buckets that hold points."""
        return [
            SeriesPoint(
                timestamp=self.start + i * self.step,
                avg=float(self.total[i] / self.count[i]),
                min=float(self.low[i]),
                max=float(self.high[i]),
                count=int(self.count[i]),
            )
            for i in np.flatnonzero(self.count).tolist()
        ]
