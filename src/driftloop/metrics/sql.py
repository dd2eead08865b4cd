"""The metric store on the shared relational database (SQLite WAL by default, PostgreSQL at scale).

Writes go to raw points and, in the same transaction, to 1-minute rollups (count, sum, min, max
and a log-bin sketch, see :mod:`driftloop.metrics.sketch`), so rollups are always up to date.
Queries over short, recent windows read raw points; long windows (or windows older than the raw
retention) read whole minutes from the rollups and the ragged edges from raw points, so count,
sum, min, max and avg stay exact and percentiles are within the sketch's 0.5 % relative accuracy.

Only portable SQL is used (no JSON operators, no ``ON CONFLICT``): tags are canonical JSON on the
series row and are filtered and grouped in Python; duplicates by ``point_id`` are found with an
indexed lookup inside the write transaction, and a concurrent writer that wins a race on a unique
key makes the loser retry.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.exc import OperationalError

from driftloop.config import MetricsConfig
from driftloop.errors import BackendUnavailableError, ConflictError, InvalidInputError
from driftloop.metrics.points import (
    AggregateResult,
    Aggregation,
    MetricPoint,
    MetricStore,
    SeriesPoint,
)
from driftloop.metrics.sketch import encode_bins, sketch_quantile
from driftloop.metrics.tables import (
    metric_points,
    metric_rollup_bins,
    metric_rollups,
    metric_series,
    metric_store_state,
)
from driftloop.store import Database

Resolution = Literal["auto", "raw", "rollup"]
MINUTE = 60
_CHUNK = 900
_WRITE_ATTEMPTS = 4
_RAW_HORIZON = "raw_horizon"
_ROLLUP_HORIZON = "rollup_horizon"
_QUANTILES: dict[str, float] = {"p50": 0.50, "p90": 0.90, "p99": 0.99}
_AGGREGATIONS = ("avg", "min", "max", "sum", "count", "p50", "p90", "p99")
_MAX_NAME = 200

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What :meth:`SqlMetricStore.purge` deleted, and the horizons it applied."""

    raw_points: int
    rollups: int
    raw_horizon: float
    rollup_horizon: float


@dataclass(slots=True)
class _Stats:
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


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for index in range(0, len(items), size):
        yield items[index:index + size]


def _canonical_tags(tags: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(tags.items())), separators=(",", ":"), ensure_ascii=False)


class SqlMetricStore(MetricStore):
    """:class:`MetricStore` on a :class:`~driftloop.store.Database`.

    ``raw_retention`` and ``rollup_retention`` (seconds) are applied by :meth:`purge`;
    windows longer than ``raw_query_limit`` seconds are answered from the rollups.
    """

    def __init__(
        self,
        database: Database,
        *,
        raw_retention: float,
        rollup_retention: float,
        raw_query_limit: float = 3600.0,
    ) -> None:
        if raw_retention <= 0 or rollup_retention <= 0:
            raise InvalidInputError(
                f"metric retentions must be positive (raw_retention={raw_retention}, "
                f"rollup_retention={rollup_retention})"
            )
        if raw_query_limit < MINUTE:
            raise InvalidInputError("raw_query_limit must be at least 60 seconds")
        self.database = database
        self.engine = database.engine
        self.raw_retention = float(raw_retention)
        self.rollup_retention = float(rollup_retention)
        self.raw_query_limit = float(raw_query_limit)
        self._lock = threading.Lock()
        self._series_ids: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self._series_tags: dict[int, dict[str, str]] = {}

    @classmethod
    def from_config(cls, database: Database, config: MetricsConfig) -> SqlMetricStore:
        """The store with ``metrics.raw_retention`` and ``metrics.rollup_retention`` applied."""
        return cls(
            database,
            raw_retention=config.raw_retention,
            rollup_retention=config.rollup_retention,
        )

    # ------------------------------------------------------------------ writing

    def write(self, points: Sequence[MetricPoint]) -> int:
        if not points:
            return 0
        series_ids = self._resolve_series(points)
        count = len(points)
        try:
            values = np.fromiter((p.value for p in points), dtype=np.float64, count=count)
            stamps = np.fromiter((p.timestamp for p in points), dtype=np.float64, count=count)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"metric point values and timestamps must be numbers: {exc}"
            ) from exc
        bad = ~(np.isfinite(values) & np.isfinite(stamps))
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise InvalidInputError(
                f"metric point {index} ({points[index].name}) has a non-finite value or "
                f"timestamp ({points[index].value!r} at {points[index].timestamp!r}); "
                "nothing of this batch was stored"
            )
        point_ids = [p.point_id for p in points]
        for index, pid in enumerate(point_ids):
            if pid is not None and (not isinstance(pid, str) or not 0 < len(pid) <= _MAX_NAME):
                raise InvalidInputError(
                    f"metric point {index}: point_id must be a string of 1 to {_MAX_NAME} "
                    "characters; nothing of this batch was stored"
                )
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                with self.engine.begin() as connection:
                    return self._write_batch(
                        connection, np.asarray(series_ids, dtype=np.int64), stamps, values,
                        point_ids,
                    )
            except SqlIntegrityError as exc:
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise ConflictError(
                        f"metric write kept colliding with concurrent writers: {exc.orig}"
                    ) from exc
            except OperationalError as exc:
                raise BackendUnavailableError(
                    f"metric store {self.database.safe_url}: {exc.orig}"
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _resolve_series(self, points: Sequence[MetricPoint]) -> list[int]:
        keys = [(p.name, tuple(p.tags.items())) for p in points]
        with self._lock:
            missing = {key for key in keys if key not in self._series_ids}
        if missing:
            self._create_series(missing)
        with self._lock:
            return [self._series_ids[key] for key in keys]

    def _create_series(self, keys: set[tuple[str, tuple[tuple[str, str], ...]]]) -> None:
        wanted: dict[str, tuple[tuple[str, tuple[tuple[str, str], ...]], str]] = {}
        aliases: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        for key in keys:
            name, items = key
            if not isinstance(name, str) or not 0 < len(name) <= _MAX_NAME:
                raise InvalidInputError(
                    f"metric name must be a string of 1 to {_MAX_NAME} characters, got {name!r}; "
                    "nothing of this batch was stored"
                )
            for tag, tag_value in items:
                if not isinstance(tag, str) or not isinstance(tag_value, str) or not tag:
                    raise InvalidInputError(
                        f"metric {name!r}: tags must map non-empty strings to strings, got "
                        f"{tag!r}: {tag_value!r}; nothing of this batch was stored"
                    )
            tags_json = _canonical_tags(dict(items))
            key_hash = hashlib.sha1(f"{name}\x00{tags_json}".encode(), usedforsecurity=False)
            aliases[key] = key_hash.hexdigest()
            wanted[key_hash.hexdigest()] = (key, tags_json)
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                with self.engine.begin() as connection:
                    found = self._series_by_hash(connection, list(wanted))
                    new = [
                        {"name": key[0], "tags": tags_json, "key_hash": h}
                        for h, (key, tags_json) in wanted.items() if h not in found
                    ]
                    if new:
                        connection.execute(metric_series.insert(), new)
                        found = self._series_by_hash(connection, list(wanted))
                break
            except SqlIntegrityError:
                if attempt == _WRITE_ATTEMPTS - 1:
                    raise
            except OperationalError as exc:
                raise BackendUnavailableError(
                    f"metric store {self.database.safe_url}: {exc.orig}"
                ) from exc
        with self._lock:
            for key, h in aliases.items():
                self._series_ids[key] = found[h]
                self._series_tags[found[h]] = dict(key[1])

    @staticmethod
    def _series_by_hash(connection: Connection, hashes: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for chunk in _chunks(hashes):
            rows = connection.execute(
                sa.select(metric_series.c.key_hash, metric_series.c.series_id).where(
                    metric_series.c.key_hash.in_(chunk)
                )
            )
            found.update({row[0]: int(row[1]) for row in rows})
        return found

    def _write_batch(
        self,
        connection: Connection,
        series_ids: NDArray[np.int64],
        stamps: NDArray[np.float64],
        values: NDArray[np.float64],
        point_ids: list[str | None],
    ) -> int:
        keep = np.ones(len(point_ids), dtype=bool)
        with_ids = [(i, pid) for i, pid in enumerate(point_ids) if pid is not None]
        if with_ids:
            seen: set[str] = set()
            for chunk in _chunks([pid for _, pid in with_ids]):
                rows = connection.execute(
                    sa.select(metric_points.c.point_id).where(metric_points.c.point_id.in_(chunk))
                )
                seen.update(row[0] for row in rows)
            for index, pid in with_ids:
                if pid in seen:
                    keep[index] = False
                else:
                    seen.add(pid)
        if not keep.all():
            series_ids, stamps, values = series_ids[keep], stamps[keep], values[keep]
            point_ids = [pid for pid, kept in zip(point_ids, keep, strict=True) if kept]
        if len(point_ids) == 0:
            return 0
        self._insert_points(connection, series_ids, stamps, values, point_ids)
        self._update_rollups(connection, series_ids, stamps, values)
        return len(point_ids)

    def _insert_points(
        self,
        connection: Connection,
        series_ids: NDArray[np.int64],
        stamps: NDArray[np.float64],
        values: NDArray[np.float64],
        point_ids: list[str | None],
    ) -> None:
        """One executemany with the statement compiled once for the dialect and the rows handed
        to the driver as they are (SQLAlchemy's per-row parameter processing would dominate)."""
        columns = ("series_id", "timestamp", "value", "point_id")
        compiled = metric_points.insert().compile(
            dialect=connection.dialect, column_keys=list(columns)
        )
        rows = zip(series_ids.tolist(), stamps.tolist(), values.tolist(), point_ids, strict=True)
        parameters: list[Any]
        if compiled.positional:
            order = [columns.index(name) for name in compiled.positiontup or ()]
            if order == [0, 1, 2, 3]:
                parameters = list(rows)
            else:
                parameters = [tuple(row[i] for i in order) for row in rows]
        else:
            parameters = [dict(zip(columns, row, strict=True)) for row in rows]
        connection.exec_driver_sql(str(compiled), parameters)

    def _update_rollups(
        self,
        connection: Connection,
        series_ids: NDArray[np.int64],
        stamps: NDArray[np.float64],
        values: NDArray[np.float64],
    ) -> None:
        minutes = np.floor(stamps / MINUTE).astype(np.int64)
        frame = pd.DataFrame({"series_id": series_ids, "minute": minutes, "value": values})
        rollups = frame.groupby(["series_id", "minute"], sort=False)["value"].agg(
            ["count", "sum", "min", "max"]
        )
        frame["bin"] = encode_bins(values)
        bins = frame.groupby(["series_id", "minute", "bin"], sort=False).size()
        unique_series = sorted({int(s) for s in series_ids.tolist()})
        low, high = int(minutes.min()), int(minutes.max())
        batch_bins = sorted({int(b) for b in frame["bin"].unique().tolist()})

        existing_rollups: set[tuple[int, int]] = set()
        existing_bins: set[tuple[int, int, int]] = set()
        for chunk in _chunks(unique_series):
            existing_rollups.update(
                (int(r[0]), int(r[1]))
                for r in connection.execute(
                    sa.select(metric_rollups.c.series_id, metric_rollups.c.minute).where(
                        metric_rollups.c.series_id.in_(chunk),
                        metric_rollups.c.minute.between(low, high),
                    )
                )
            )
            for bin_chunk in _chunks(batch_bins):
                existing_bins.update(
                    (int(r[0]), int(r[1]), int(r[2]))
                    for r in connection.execute(
                        sa.select(
                            metric_rollup_bins.c.series_id,
                            metric_rollup_bins.c.minute,
                            metric_rollup_bins.c.bin,
                        ).where(
                            metric_rollup_bins.c.series_id.in_(chunk),
                            metric_rollup_bins.c.minute.between(low, high),
                            metric_rollup_bins.c.bin.in_(bin_chunk),
                        )
                    )
                )

        rollup_inserts: list[dict[str, Any]] = []
        rollup_updates: list[dict[str, Any]] = []
        for (sid, minute), count, total, lo, hi in zip(
            rollups.index.tolist(),
            rollups["count"].tolist(),
            rollups["sum"].tolist(),
            rollups["min"].tolist(),
            rollups["max"].tolist(),
            strict=True,
        ):
            if (sid, minute) in existing_rollups:
                rollup_updates.append(
                    {"b_sid": sid, "b_minute": minute, "b_count": count, "b_sum": total,
                     "b_min": lo, "b_max": hi}
                )
            else:
                rollup_inserts.append(
                    {"series_id": sid, "minute": minute, "count": count, "sum": total,
                     "min": lo, "max": hi}
                )
        bin_inserts: list[dict[str, Any]] = []
        bin_updates: list[dict[str, Any]] = []
        for (sid, minute, bin_), count in zip(bins.index.tolist(), bins.tolist(), strict=True):
            if (sid, minute, bin_) in existing_bins:
                bin_updates.append(
                    {"b_sid": sid, "b_minute": minute, "b_bin": bin_, "b_count": count}
                )
            else:
                bin_inserts.append(
                    {"series_id": sid, "minute": minute, "bin": bin_, "count": count}
                )
        r = metric_rollups.c
        if rollup_updates:
            connection.execute(
                metric_rollups.update()
                .where(r.series_id == sa.bindparam("b_sid"), r.minute == sa.bindparam("b_minute"))
                .values(
                    count=r.count + sa.bindparam("b_count"),
                    sum=r.sum + sa.bindparam("b_sum"),
                    min=sa.case((r.min <= sa.bindparam("b_min"), r.min),
                                else_=sa.bindparam("b_min")),
                    max=sa.case((r.max >= sa.bindparam("b_max"), r.max),
                                else_=sa.bindparam("b_max")),
                ),
                rollup_updates,
            )
        if rollup_inserts:
            connection.execute(metric_rollups.insert(), rollup_inserts)
        b = metric_rollup_bins.c
        if bin_updates:
            connection.execute(
                metric_rollup_bins.update()
                .where(
                    b.series_id == sa.bindparam("b_sid"),
                    b.minute == sa.bindparam("b_minute"),
                    b.bin == sa.bindparam("b_bin"),
                )
                .values(count=b.count + sa.bindparam("b_count")),
                bin_updates,
            )
        if bin_inserts:
            connection.execute(metric_rollup_bins.insert(), bin_inserts)

    # ------------------------------------------------------------------ series lookup

    def _matching_series(
        self, connection: Connection, metric: str, filter: Mapping[str, str] | None
    ) -> dict[int, dict[str, str]]:
        rows = connection.execute(
            sa.select(metric_series.c.series_id, metric_series.c.tags).where(
                metric_series.c.name == metric
            )
        ).all()
        matched: dict[int, dict[str, str]] = {}
        for row in rows:
            series_id = int(row[0])
            tags = self._series_tags.get(series_id)
            if tags is None:
                tags = {str(k): str(v) for k, v in json.loads(row[1]).items()}
                with self._lock:
                    self._series_tags[series_id] = tags
            if filter and any(tags.get(k) != v for k, v in filter.items()):
                continue
            matched[series_id] = tags
        return matched

    @staticmethod
    def _groups(
        series: Mapping[int, Mapping[str, str]], group_by: Sequence[str]
    ) -> dict[int, tuple[str, ...]]:
        """series id → group key; series lacking a group-by tag belong to no group."""
        groups: dict[int, tuple[str, ...]] = {}
        for series_id, tags in series.items():
            key = tuple(tags.get(tag) for tag in group_by)
            if all(part is not None for part in key):
                groups[series_id] = key  # type: ignore[assignment]
        return groups

    # ------------------------------------------------------------------ reading

    def _horizons(self, connection: Connection) -> tuple[float, float]:
        rows = dict(
            connection.execute(
                sa.select(metric_store_state.c.key, metric_store_state.c.value)
            ).all()
        )
        return float(rows.get(_RAW_HORIZON, -math.inf)), float(
            rows.get(_ROLLUP_HORIZON, -math.inf)
        )

    def query(
        self,
        metric: str,
        aggregation: Aggregation,
        start: float,
        end: float,
        *,
        filter: Mapping[str, str] | None = None,
        group_by: Sequence[str] = (),
        resolution: Resolution = "auto",
    ) -> list[AggregateResult]:
        """Aggregate points with ``start <= timestamp < end``, one result per group.

        ``resolution="raw"`` forces raw points, ``"rollup"`` forces whole minutes from the
        rollups plus raw points for the partial minutes at the edges. An ungrouped query always
        answers one result (``value`` is ``None`` when no point matched, ``0`` for ``count``);
        a grouped one answers the groups that have points. Series without one of the
        ``group_by`` tags belong to no group.
        """
        if aggregation not in _AGGREGATIONS:
            raise InvalidInputError(
                f"unknown aggregation {aggregation!r}; expected one of {', '.join(_AGGREGATIONS)}"
            )
        if not end > start:
            raise InvalidInputError(f"query window is empty: start {start} >= end {end}")
        group_by = tuple(group_by)
        try:
            with self.engine.connect() as connection:
                series = self._matching_series(connection, metric, filter)
                groups = self._groups(series, group_by)
                use_rollups = self._use_rollups(connection, start, end, resolution)
                if aggregation in _QUANTILES:
                    values = self._quantiles(
                        connection, groups, start, end, _QUANTILES[aggregation], use_rollups
                    )
                else:
                    stats = self._stats(connection, groups, start, end, use_rollups)
                    values = {key: (s.value(aggregation), s.count) for key, s in stats.items()}
        except OperationalError as exc:
            raise BackendUnavailableError(
                f"metric store {self.database.safe_url}: {exc.orig}"
            ) from exc
        results = [
            AggregateResult(group=dict(zip(group_by, key, strict=True)), value=value, count=count)
            for key, (value, count) in sorted(values.items())
            if count > 0
        ]
        if not group_by and not results:
            results = [AggregateResult({}, 0.0 if aggregation == "count" else None, 0)]
        return results

    def _use_rollups(
        self, connection: Connection, start: float, end: float, resolution: Resolution
    ) -> bool:
        if resolution == "raw":
            return False
        if resolution == "rollup":
            return True
        if end - start > self.raw_query_limit:
            return True
        raw_horizon, _ = self._horizons(connection)
        return start < raw_horizon

    def _plan(
        self, connection: Connection, start: float, end: float
    ) -> tuple[int, int, list[tuple[float, float]]]:
        """Whole minutes ``[m0, m1)`` to read from rollups and the raw edge ranges; edges older
        than the raw horizon widen to their whole minute instead."""
        raw_horizon, _ = self._horizons(connection)
        m0, m1 = math.ceil(start / MINUTE), math.floor(end / MINUTE)
        if m0 >= m1:
            if start >= raw_horizon:
                return 0, 0, [(start, end)]
            return math.floor(start / MINUTE), math.ceil(end / MINUTE), []
        edges: list[tuple[float, float]] = []
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
        return m0, m1, edges

    def _stats(
        self,
        connection: Connection,
        groups: Mapping[int, tuple[str, ...]],
        start: float,
        end: float,
        use_rollups: bool,
    ) -> dict[tuple[str, ...], _Stats]:
        stats: dict[tuple[str, ...], _Stats] = {}
        ids = sorted(groups)
        p, r = metric_points.c, metric_rollups.c
        ranges = [(start, end)]
        m0 = m1 = 0
        if use_rollups:
            m0, m1, ranges = self._plan(connection, start, end)
        queries: list[sa.Select[Any]] = []
        for chunk in _chunks(ids):
            for lo, hi in ranges:
                queries.append(
                    sa.select(p.series_id, sa.func.count(), sa.func.sum(p.value),
                              sa.func.min(p.value), sa.func.max(p.value))
                    .where(p.series_id.in_(chunk), p.timestamp >= lo, p.timestamp < hi)
                    .group_by(p.series_id)
                )
            if m1 > m0:
                queries.append(
                    sa.select(r.series_id, sa.func.sum(r.count), sa.func.sum(r.sum),
                              sa.func.min(r.min), sa.func.max(r.max))
                    .where(r.series_id.in_(chunk), r.minute >= m0, r.minute < m1)
                    .group_by(r.series_id)
                )
        for statement in queries:
            for sid, count, total, low, high in connection.execute(statement):
                if count:
                    key = groups[int(sid)]
                    stats.setdefault(key, _Stats()).add(
                        int(count), float(total), float(low), float(high)
                    )
        return stats

    def _raw_values(
        self,
        connection: Connection,
        ids: Sequence[int],
        ranges: Sequence[tuple[float, float]],
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        p = metric_points.c
        sids: list[int] = []
        values: list[float] = []
        for chunk in _chunks(ids):
            for lo, hi in ranges:
                rows = connection.execute(
                    sa.select(p.series_id, p.value).where(
                        p.series_id.in_(chunk), p.timestamp >= lo, p.timestamp < hi
                    )
                )
                for sid, value in rows:
                    sids.append(sid)
                    values.append(value)
        return np.asarray(sids, dtype=np.int64), np.asarray(values, dtype=np.float64)

    def _quantiles(
        self,
        connection: Connection,
        groups: Mapping[int, tuple[str, ...]],
        start: float,
        end: float,
        q: float,
        use_rollups: bool,
    ) -> dict[tuple[str, ...], tuple[float | None, int]]:
        ids = sorted(groups)
        results: dict[tuple[str, ...], tuple[float | None, int]] = {}
        if not use_rollups:
            sids, values = self._raw_values(connection, ids, [(start, end)])
            for key, group_values in self._split_by_group(groups, sids, values).items():
                results[key] = (float(np.percentile(group_values, q * 100)), len(group_values))
            return results
        stats = self._stats(connection, groups, start, end, use_rollups=True)
        m0, m1, edges = self._plan(connection, start, end)
        bin_counts: dict[tuple[str, ...], dict[int, int]] = {}
        b = metric_rollup_bins.c
        if m1 > m0:
            for chunk in _chunks(ids):
                rows = connection.execute(
                    sa.select(b.series_id, b.bin, sa.func.sum(b.count))
                    .where(b.series_id.in_(chunk), b.minute >= m0, b.minute < m1)
                    .group_by(b.series_id, b.bin)
                )
                for sid, bin_, count in rows:
                    counts = bin_counts.setdefault(groups[int(sid)], {})
                    counts[int(bin_)] = counts.get(int(bin_), 0) + int(count)
        if edges:
            sids, values = self._raw_values(connection, ids, edges)
            for key, group_values in self._split_by_group(groups, sids, values).items():
                counts = bin_counts.setdefault(key, {})
                unique, occurrences = np.unique(encode_bins(group_values), return_counts=True)
                for bin_, count in zip(unique.tolist(), occurrences.tolist(), strict=True):
                    counts[bin_] = counts.get(bin_, 0) + count
        for key, counts in bin_counts.items():
            group_stats = stats.get(key)
            if group_stats is None or group_stats.count == 0:
                continue
            value = sketch_quantile(
                np.fromiter(counts.keys(), dtype=np.int64, count=len(counts)),
                np.fromiter(counts.values(), dtype=np.int64, count=len(counts)),
                q,
                low=group_stats.low,
                high=group_stats.high,
            )
            results[key] = (value, group_stats.count)
        return results

    @staticmethod
    def _split_by_group(
        groups: Mapping[int, tuple[str, ...]],
        sids: NDArray[np.int64],
        values: NDArray[np.float64],
    ) -> dict[tuple[str, ...], NDArray[np.float64]]:
        by_group: dict[tuple[str, ...], list[int]] = {}
        for sid in np.unique(sids).tolist():
            by_group.setdefault(groups[sid], []).append(sid)
        return {key: values[np.isin(sids, members)] for key, members in by_group.items()}

    def series(
        self,
        metric: str,
        start: float,
        end: float,
        step: float,
        *,
        filter: Mapping[str, str] | None = None,
    ) -> list[SeriesPoint]:
        """Buckets ``[start + k·step, start + (k+1)·step)`` that hold points. With a whole-minute
        ``step`` and a minute-aligned ``start`` over a long or old range, whole minutes come from
        the rollups."""
        if step <= 0:
            raise InvalidInputError(f"series step must be positive, got {step}")
        if not end > start:
            raise InvalidInputError(f"series window is empty: start {start} >= end {end}")
        buckets = math.ceil((end - start) / step)
        count = np.zeros(buckets, dtype=np.int64)
        total = np.zeros(buckets)
        low = np.full(buckets, np.inf)
        high = np.full(buckets, -np.inf)
        p, r = metric_points.c, metric_rollups.c
        try:
            with self.engine.connect() as connection:
                ids = sorted(self._matching_series(connection, metric, filter))
                aligned = step % MINUTE == 0 and start % MINUTE == 0
                ranges = [(start, end)]
                m0 = m1 = 0
                if aligned and self._use_rollups(connection, start, end, "auto"):
                    m0, m1, ranges = self._plan(connection, start, end)
                for chunk in _chunks(ids):
                    for lo, hi in ranges:
                        rows = connection.execute(
                            sa.select(p.timestamp, p.value).where(
                                p.series_id.in_(chunk), p.timestamp >= lo, p.timestamp < hi
                            )
                        ).all()
                        if rows:
                            data = np.asarray(rows, dtype=np.float64)
                            index = np.minimum(
                                ((data[:, 0] - start) // step).astype(np.int64), buckets - 1
                            )
                            np.add.at(count, index, 1)
                            np.add.at(total, index, data[:, 1])
                            np.minimum.at(low, index, data[:, 1])
                            np.maximum.at(high, index, data[:, 1])
                    if m1 > m0:
                        rollup_rows = connection.execute(
                            sa.select(r.minute, r.count, r.sum, r.min, r.max).where(
                                r.series_id.in_(chunk), r.minute >= m0, r.minute < m1
                            )
                        ).all()
                        if rollup_rows:
                            data = np.asarray(rollup_rows, dtype=np.float64)
                            index = np.clip(
                                ((data[:, 0] * MINUTE - start) // step).astype(np.int64),
                                0, buckets - 1,
                            )
                            np.add.at(count, index, data[:, 1].astype(np.int64))
                            np.add.at(total, index, data[:, 2])
                            np.minimum.at(low, index, data[:, 3])
                            np.maximum.at(high, index, data[:, 4])
        except OperationalError as exc:
            raise BackendUnavailableError(
                f"metric store {self.database.safe_url}: {exc.orig}"
            ) from exc
        return [
            SeriesPoint(
                timestamp=start + i * step,
                avg=float(total[i] / count[i]),
                min=float(low[i]),
                max=float(high[i]),
                count=int(count[i]),
            )
            for i in np.flatnonzero(count).tolist()
        ]

    def points(
        self,
        metric: str,
        start: float,
        end: float,
        *,
        filter: Mapping[str, str] | None = None,
    ) -> list[MetricPoint]:
        p = metric_points.c
        found: list[MetricPoint] = []
        try:
            with self.engine.connect() as connection:
                series = self._matching_series(connection, metric, filter)
                for chunk in _chunks(sorted(series)):
                    rows = connection.execute(
                        sa.select(p.series_id, p.timestamp, p.value, p.point_id).where(
                            p.series_id.in_(chunk), p.timestamp >= start, p.timestamp < end
                        )
                    )
                    found.extend(
                        MetricPoint(metric, float(v), float(t), series[int(sid)], pid)
                        for sid, t, v, pid in rows
                    )
        except OperationalError as exc:
            raise BackendUnavailableError(
                f"metric store {self.database.safe_url}: {exc.orig}"
            ) from exc
        found.sort(key=lambda point: point.timestamp)
        return found

    def earliest(
        self,
        metric: str,
        start: float,
        end: float,
        *,
        filter: Mapping[str, str] | None = None,
    ) -> float | None:
        """The oldest point's timestamp in the window; from the rollups (to the minute) where
        raw points are already purged."""
        p, r = metric_points.c, metric_rollups.c
        with self.engine.connect() as connection:
            ids = sorted(self._matching_series(connection, metric, filter))
            raw_horizon, _ = self._horizons(connection)
            best: float | None = None
            for chunk in _chunks(ids):
                if start < raw_horizon:
                    minute = connection.execute(
                        sa.select(sa.func.min(r.minute)).where(
                            r.series_id.in_(chunk),
                            r.minute >= math.floor(start / MINUTE),
                            r.minute < math.ceil(end / MINUTE),
                        )
                    ).scalar()
                    if minute is not None:
                        candidate = max(float(minute) * MINUTE, start)
                        best = candidate if best is None else min(best, candidate)
                        continue
                found = connection.execute(
                    sa.select(sa.func.min(p.timestamp)).where(
                        p.series_id.in_(chunk), p.timestamp >= start, p.timestamp < end
                    )
                ).scalar()
                if found is not None:
                    best = float(found) if best is None else min(best, float(found))
        return best

    def metric_names(self) -> list[str]:
        """Every metric name with at least one series."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(metric_series.c.name).distinct()).scalars()
            return sorted(str(name) for name in rows)

    # ------------------------------------------------------------------ retention

    def purge(self, now: float) -> PurgeResult:
        """Delete raw points older than ``now - raw_retention`` and rollups whose minute ended
        before ``now - rollup_retention``; later queries over those ranges use what is left."""
        raw_horizon = now - self.raw_retention
        rollup_horizon = now - self.rollup_retention
        last_minute = math.floor(rollup_horizon / MINUTE)  # minutes < this ended by the horizon
        try:
            with self.engine.begin() as connection:
                raw_deleted = 0
                all_series = connection.execute(sa.select(metric_series.c.series_id)).scalars()
                for chunk in _chunks(sorted(all_series)):
                    raw_deleted += connection.execute(
                        metric_points.delete().where(
                            metric_points.c.series_id.in_(chunk),
                            metric_points.c.timestamp < raw_horizon,
                        )
                    ).rowcount
                rollups_deleted = connection.execute(
                    metric_rollups.delete().where(metric_rollups.c.minute < last_minute)
                ).rowcount
                connection.execute(
                    metric_rollup_bins.delete().where(metric_rollup_bins.c.minute < last_minute)
                )
                current_raw, current_rollup = self._horizons(connection)
                for key, value, current in (
                    (_RAW_HORIZON, raw_horizon, current_raw),
                    (_ROLLUP_HORIZON, rollup_horizon, current_rollup),
                ):
                    if value <= current:
                        continue
                    updated = connection.execute(
                        metric_store_state.update()
                        .where(metric_store_state.c.key == key)
                        .values(value=value)
                    ).rowcount
                    if not updated:
                        connection.execute(
                            metric_store_state.insert().values(key=key, value=value)
                        )
        except OperationalError as exc:
            raise BackendUnavailableError(
                f"metric store {self.database.safe_url}: {exc.orig}"
            ) from exc
        return PurgeResult(
            raw_points=int(raw_deleted),
            rollups=int(rollups_deleted),
            raw_horizon=max(raw_horizon, current_raw),
            rollup_horizon=max(rollup_horizon, current_rollup),
        )
