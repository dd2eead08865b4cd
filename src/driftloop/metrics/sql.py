"""The metric store on the shared relational database (SQLite WAL by default, PostgreSQL at scale).

Writes go to raw points and, in the same transaction, to 1-minute and 1-hour rollups (count,
sum, min, max and a log-bin sketch, see :mod:`driftloop.metrics.sketch`), so rollups are always up
to date, late points included. Queries over short, recent windows read raw points; long windows
(or windows older than the raw retention) read whole hours from the hour rollups, the remaining
whole minutes from the minute rollups and the partial minutes at the edges from raw points, so
count, sum, min, max and avg stay exact, and percentiles, merged from the same bins either way,
are within the sketch's 0.5 % relative accuracy. A 7-day window reads about 168 hour rows and at
most 118 minute rows per series instead of 10,080 minute rows.

The SQL is what SQLite (>= 3.24) and PostgreSQL both speak: no JSON operators (tags are canonical
JSON on the series row, filtered and grouped in Python), ``ON CONFLICT`` for upserts and for
skipping points stored before (a batch with some stored ``point_id`` s is redone with an indexed
lookup of them), and a concurrent writer that wins a race on a unique key makes the loser retry.

Writing is built for throughput: a batch is read as columns (:class:`PointBatch`), every per-point
step runs in numpy or C builtins, the write statements are compiled once per dialect and handed to
the driver directly, and rows go in batches: on SQLite in multi-row ``VALUES`` statements, so
SQLite works through hundreds of rows per call with Python's lock released (the reporting threads
of the same process keep running) instead of taking it back after every row; on PostgreSQL as one
array per column (``INSERT ... SELECT * FROM unnest(...)``), a whole batch in one round trip.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
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
    PointBatch,
    SeriesPoint,
    TagFilter,
)
from driftloop.metrics.sketch import (
    encode_bins,
    merge_bins,
    pack_sketch,
    sketch_quantile,
    unpack_sketch,
)
from driftloop.metrics.tables import (
    metric_hour_rollups,
    metric_points,
    metric_rollup_bins,
    metric_rollups,
    metric_series,
    metric_store_state,
)
from driftloop.store import Database

Resolution = Literal["auto", "raw", "rollup"]
MINUTE = 60
HOUR = 3600
_PER_HOUR = HOUR // MINUTE
_CHUNK = 900
_WRITE_ATTEMPTS = 4
_RAW_HORIZON = "raw_horizon"
_ROLLUP_HORIZON = "rollup_horizon"
_HOUR_ROLLUPS = "hour_rollups"
"""State key set once the hour rollups hold every minute rollup (see ``_ensure_hour_rollups``)."""
_QUANTILES: dict[str, float] = {"p50": 0.50, "p90": 0.90, "p99": 0.99}
_AGGREGATIONS = ("avg", "min", "max", "sum", "count", "p50", "p90", "p99")
_MAX_NAME = 200
_MULTIROW_ROWS = 512
_SQLITE_OLD_VARIABLES = 999
"""Bound parameters per statement before SQLite 3.32 (32,766 since)."""

T = TypeVar("T")
N = TypeVar("N", bound=np.generic)


@dataclass(frozen=True, slots=True)
class _Plan:
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


def _between(column: sa.ColumnElement[Any], kind: str, index: int) -> sa.ColumnElement[bool]:
    return sa.and_(column >= sa.bindparam(f"{kind}_lo_{index}"),
                   column < sa.bindparam(f"{kind}_hi_{index}"))


def _ids() -> sa.BindParameter[int]:
    return sa.bindparam("ids", type_=sa.Integer, expanding=True)


def _union(parts: Sequence[sa.Select[Any]]) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    return parts[0] if len(parts) == 1 else sa.union_all(*parts)


# Statements are built once per plan shape with bound parameters (``Plan.parameters``), so a
# query costs SQLAlchemy a cache lookup instead of building and hashing a new expression tree.


@functools.cache
def _stats_statement(
    raw: int, minutes: int, hours: int
) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    """series_id, count, sum, min, max: one row per series and part of the plan."""
    p, r, h = metric_points.c, metric_rollups.c, metric_hour_rollups.c
    ids = _ids()
    parts = [
        sa.select(p.series_id, sa.func.count(), sa.func.sum(p.value), sa.func.min(p.value),
                  sa.func.max(p.value))
        .where(p.series_id.in_(ids), _between(p.timestamp, "raw", i))
        .group_by(p.series_id)
        for i in range(raw)
    ]
    for table, column, kind, count in ((r, r.minute, "minute", minutes),
                                       (h, h.hour, "hour", hours)):
        parts.extend(
            sa.select(table.series_id, sa.func.sum(table.count), sa.func.sum(table.sum),
                      sa.func.min(table.min), sa.func.max(table.max))
            .where(table.series_id.in_(ids), _between(column, kind, i))
            .group_by(table.series_id)
            for i in range(count)
        )
    return _union(parts)


@functools.cache
def _raw_values_statement(raw: int) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    p = metric_points.c
    ids = _ids()
    return _union([
        sa.select(p.series_id, p.value).where(p.series_id.in_(ids), _between(p.timestamp, "raw", i))
        for i in range(raw)
    ])


@functools.cache
def _minute_bins_statement(minutes: int) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    b = metric_rollup_bins.c
    ids = _ids()
    return _union([
        sa.select(b.series_id, b.bin, sa.func.sum(b.count))
        .where(b.series_id.in_(ids), _between(b.minute, "minute", i))
        .group_by(b.series_id, b.bin)
        for i in range(minutes)
    ])


@functools.cache
def _hour_sketches_statement(hours: int) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    h = metric_hour_rollups.c
    ids = _ids()
    return _union([
        sa.select(h.series_id, h.sketch).where(h.series_id.in_(ids), _between(h.hour, "hour", i))
        for i in range(hours)
    ])


_SERIES_BY_NAME = sa.select(metric_series.c.series_id, metric_series.c.tags).where(
    metric_series.c.name == sa.bindparam("name")
)
_HORIZONS = sa.select(metric_store_state.c.key, metric_store_state.c.value).where(
    metric_store_state.c.key.in_((_RAW_HORIZON, _ROLLUP_HORIZON))
)


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What :meth:`SqlMetricStore.purge` deleted, and the horizons it applied."""

    raw_points: int
    rollups: int
    raw_horizon: float
    rollup_horizon: float
    hour_rollups: int = 0


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


def _matrix(rows: Sequence[Sequence[Any]], columns: int, dtype: type[N]) -> NDArray[N]:
    """Result rows as a 2-d array (numpy would probe every SQLAlchemy ``Row`` for the array
    protocols, which costs more than reading the values)."""
    flat = np.fromiter(itertools.chain.from_iterable(rows), dtype=dtype, count=len(rows) * columns)
    return flat.reshape(len(rows), columns)


@dataclass(frozen=True, slots=True)
class _SortedBatch:
    """A write batch sorted by (series, minute, bin)."""

    series_ids: NDArray[np.int64]
    minutes: NDArray[np.int64]
    values: NDArray[np.float64]
    bins: NDArray[np.int64]


def _runs(*keys: NDArray[np.int64]) -> NDArray[np.intp]:
    """The index where each run of equal keys starts, in arrays sorted by those keys."""
    change = np.zeros(len(keys[0]), dtype=bool)
    change[0] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    return np.flatnonzero(change)


def _aggregate(
    starts: NDArray[np.intp], values: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """count, sum, min and max of every run of ``values`` beginning at ``starts``."""
    counts = np.diff(np.r_[starts, len(values)]).astype(np.int64)
    return (counts, np.add.reduceat(values, starts), np.minimum.reduceat(values, starts),
            np.maximum.reduceat(values, starts))


def _merged_stats(columns: Any, incoming: Any = None) -> dict[str, Any]:
    """SET values that merge incoming count/sum/min/max into a rollup row's (``columns``: the
    table's ``.c``; ``incoming``: an upsert's ``excluded``, else the bind parameters
    ``b_count``/``b_sum``/``b_min``/``b_max``)."""
    def new(name: str) -> Any:
        return sa.bindparam(f"b_{name}") if incoming is None else incoming[name]

    return {
        "count": columns.count + new("count"),
        "sum": columns.sum + new("sum"),
        "min": sa.case((columns.min <= new("min"), columns.min), else_=new("min")),
        "max": sa.case((columns.max >= new("max"), columns.max), else_=new("max")),
    }


def _dialect_insert(dialect: str, table: sa.Table) -> Any:
    """An INSERT with this dialect's ``ON CONFLICT`` clauses (SQLite >= 3.24, PostgreSQL)."""
    if dialect == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)


def _upsert(dialect: str, table: sa.Table, keys: Sequence[str],
            merge: Callable[[Any, Any], dict[str, Any]]) -> Any:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET merge(row, excluded)`` for this dialect
    (SQLite >= 3.24 and PostgreSQL both speak it)."""
    insert = _dialect_insert(dialect, table)
    return insert.on_conflict_do_update(index_elements=[table.c[k] for k in keys],
                                        set_=merge(table.c, insert.excluded))


_POINT_COLUMNS = ("series_id", "timestamp", "value", "point_id")
_ROLLUP_COLUMNS = ("series_id", "minute", "count", "sum", "min", "max")
_BIN_COLUMNS = ("series_id", "minute", "bin", "count")
_WRITES: dict[str, tuple[Callable[[str], Any], Sequence[str]]] = {
    "points": (lambda dialect: metric_points.insert(), _POINT_COLUMNS),
    "points_skipping_stored": (
        lambda dialect: _dialect_insert(dialect, metric_points).on_conflict_do_nothing(
            index_elements=[metric_points.c.point_id]),
        _POINT_COLUMNS,
    ),
    "minute_rollups": (
        lambda dialect: _upsert(dialect, metric_rollups, ("series_id", "minute"), _merged_stats),
        _ROLLUP_COLUMNS,
    ),
    "rollup_bins": (
        lambda dialect: _upsert(dialect, metric_rollup_bins, ("series_id", "minute", "bin"),
                                lambda row, new: {"count": row.count + new.count}),
        _BIN_COLUMNS,
    ),
}
"""The statements of the write path, by name: a builder per dialect and the order of the
columns of the rows handed to :func:`_executemany`."""


@dataclass(frozen=True, slots=True)
class _DriverStatement:
    sql: str
    columns: Sequence[str]
    order: list[int] | None
    """Where each positional parameter comes from in a row (``None``: as the row is)."""
    named: bool
    rows_per_statement: int = 1
    """Above 1: the most rows one multi-row ``VALUES`` statement carries."""
    values_row: str = ""
    """The ``(?, ?, ...)`` of ``sql``'s one-row ``VALUES`` clause (with a multi-row form)."""
    columnar: bool = False
    """``sql`` takes one array per column (PostgreSQL's ``unnest``): a batch in one call."""
    multirow: dict[int, str] = field(default_factory=dict)
    """The multi-row form of ``sql`` by number of rows, made on first use."""

    def with_rows(self, count: int) -> str:
        sql = self.multirow.get(count)
        if sql is None:
            sql = self.multirow[count] = self.sql.replace(
                f"VALUES {self.values_row}", "VALUES " + ", ".join([self.values_row] * count), 1)
        return sql


def _values_row(sql: str, placeholder: str, columns: int) -> str | None:
    """The parenthesized row after ``sql``'s only ``VALUES`` when it holds one ``placeholder``
    per column and nothing else binds parameters (so rows can be repeated); else None."""
    if sql.count("VALUES (") != 1 or sql.count(placeholder) != columns:
        return None
    start = sql.index("VALUES (") + len("VALUES ")
    end = sql.find(")", start)
    row = sql[start:end + 1]
    return row if row.count(placeholder) == columns and "(" not in row[1:] else None


_driver_statements: dict[tuple[str, str, str, str], _DriverStatement] = {}


def _driver_statement(dialect: sa.engine.Dialect, name: str) -> _DriverStatement:
    key = (dialect.name, dialect.driver, dialect.paramstyle, name)
    statement = _driver_statements.get(key)
    if statement is None:
        statement = _driver_statements[key] = _compile_write(dialect, name)
    return statement


def _positional_postgresql(dialect: sa.engine.Dialect) -> sa.engine.Dialect:
    """The PostgreSQL driver's dialect with ``%s`` parameters (psycopg and psycopg2 take both
    styles), so that the one-row ``VALUES`` can be found and replaced."""
    return type(dialect)(paramstyle="format")  # type: ignore[call-arg]


def _compile_write(dialect: sa.engine.Dialect, name: str) -> _DriverStatement:
    build, columns = _WRITES[name]
    statement = build(dialect.name)
    compiling = _positional_postgresql(dialect) if dialect.name == "postgresql" else dialect
    # for_executemany: no RETURNING of the new ids, which nothing reads
    compiled = statement.compile(dialect=compiling, column_keys=list(columns),
                                 for_executemany=True)
    sql = str(compiled)
    if not compiled.positional:
        return _DriverStatement(sql, columns, None, named=True)
    order = [columns.index(column) for column in compiled.positiontup or ()]
    in_order = order == list(range(len(columns)))
    placeholder = "?" if compiling.paramstyle == "qmark" else "%s"
    row = _values_row(sql, placeholder, len(columns)) if in_order else None
    if row is None:
        return _DriverStatement(sql, columns, None if in_order else order, named=False)
    if dialect.name == "postgresql":
        # One array per column: a short statement whatever the batch size (the driver parses
        # a long multi-row text on every call) and one round trip per batch; psycopg sends
        # the arrays in binary (``%b``), which spares it quoting every element as text.
        marker = "%b" if dialect.driver == "psycopg" else "%s"
        arrays = ", ".join(
            f"{marker}::{statement.table.c[column].type.compile(dialect=compiling)}[]"
            for column in columns)
        return _DriverStatement(sql.replace(f"VALUES {row}",
                                            f"SELECT * FROM unnest({arrays})", 1),
                                columns, None, named=False, columnar=True)
    if dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 32):
        rows_per_statement = _SQLITE_OLD_VARIABLES // len(columns)
    else:
        rows_per_statement = _MULTIROW_ROWS
    return _DriverStatement(sql, columns, None, named=False,
                            rows_per_statement=rows_per_statement, values_row=row)


def _execute_multirow(connection: Connection, statement: _DriverStatement,
                      rows: Sequence[tuple[Any, ...]]) -> int:
    """``rows`` in multi-row ``VALUES`` statements of power-of-two sizes (so a few statement
    texts serve every batch size): SQLite then runs whole chunks in one step, with Python's
    lock released, instead of handing it back and forth once per row."""
    changed = 0
    start = 0
    while start < len(rows):
        size = min(statement.rows_per_statement, 1 << ((len(rows) - start).bit_length() - 1))
        result = connection.exec_driver_sql(
            statement.with_rows(size),
            tuple(itertools.chain.from_iterable(rows[start:start + size])),
        )
        changed += result.rowcount
        start += size
    return changed


def _executemany(connection: Connection, name: str, rows: Sequence[tuple[Any, ...]]) -> int:
    """Run the write statement ``name`` (see ``_WRITES``) for every row, compiled once per
    dialect, with the rows handed to the driver as they are (SQLAlchemy's per-row parameter
    processing would dominate the cost of a large batch). The rows the driver counts as
    changed."""
    statement = _driver_statement(connection.dialect, name)
    if statement.columnar:
        if not rows:
            return 0
        arrays = tuple(list(column) for column in zip(*rows, strict=True))
        return int(connection.exec_driver_sql(statement.sql, arrays).rowcount)
    if statement.rows_per_statement > 1:
        return _execute_multirow(connection, statement, rows)
    parameters: Sequence[Any] = rows
    if statement.named:
        parameters = [dict(zip(statement.columns, row, strict=True)) for row in rows]
    elif statement.order is not None:
        parameters = [tuple(row[i] for i in statement.order) for row in rows]
    return int(connection.exec_driver_sql(statement.sql, list(parameters)).rowcount)


class _AlreadyStoredError(Exception):
    """Some points of an optimistically inserted batch were stored before (rolls it back)."""


def _check_point_ids(point_ids: Sequence[str | None]) -> bool:
    """Raise unless every id is ``None`` or a string of 1 to ``_MAX_NAME`` characters; True
    when all are strings."""
    if set(map(type, point_ids)) == {str}:
        lengths = set(map(len, cast("Sequence[str]", point_ids)))
        if min(lengths) > 0 and max(lengths) <= _MAX_NAME:
            return True
    for index, pid in enumerate(point_ids):
        if pid is not None and (not isinstance(pid, str) or not 0 < len(pid) <= _MAX_NAME):
            raise InvalidInputError(
                f"metric point {index}: point_id must be a string of 1 to {_MAX_NAME} "
                "characters; nothing of this batch was stored"
            )
    return None not in point_ids


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
        self._hour_rollups_ready = False

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
        # Columns all the way (see PointBatch): a batch from the SDK is read without making one
        # object per point, and every per-point step below runs in C (numpy, map, zip, set).
        batch = PointBatch.of(points)
        count = len(batch)
        try:
            values = np.array(batch.values, dtype=np.float64)
            stamps = np.array(batch.timestamps, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"metric point values and timestamps must be numbers: {exc}"
            ) from exc
        if values.shape != (count,) or stamps.shape != (count,):
            raise InvalidInputError("metric point values and timestamps must be numbers")
        bad = ~(np.isfinite(values) & np.isfinite(stamps))
        if bad.any():
            index = int(np.flatnonzero(bad)[0])
            raise InvalidInputError(
                f"metric point {index} ({batch.names[index]}) has a non-finite value or "
                f"timestamp ({batch.values[index]!r} at {batch.timestamps[index]!r}); "
                "nothing of this batch was stored"
            )
        point_ids = batch.point_ids
        all_strings = _check_point_ids(point_ids)
        series_ids = self._resolve_series(batch.names, batch.tags)
        self._ensure_hour_rollups()
        # A batch whose points all carry distinct ids is inserted skipping stored ids and kept
        # if the driver counts every row as new, as it almost always is; a redelivery (some
        # ids stored before) rolls back and takes the path that looks the stored ids up first.
        optimistic = (self.engine.dialect.supports_sane_multi_rowcount
                      and all_strings and len(set(point_ids)) == count)
        collisions = 0
        while True:
            try:
                with self.engine.begin() as connection:
                    return self._write_batch(
                        connection, np.asarray(series_ids, dtype=np.int64), stamps, values,
                        point_ids, optimistic=optimistic,
                    )
            except _AlreadyStoredError:
                optimistic = False
            except SqlIntegrityError as exc:
                collisions += 1
                if collisions == _WRITE_ATTEMPTS:
                    raise ConflictError(
                        f"metric write kept colliding with concurrent writers: {exc.orig}"
                    ) from exc
            except OperationalError as exc:
                raise BackendUnavailableError(
                    f"metric store {self.database.safe_url}: {exc.orig}"
                ) from exc

    def _resolve_series(
        self, names: Sequence[str], tags: Sequence[Mapping[str, str]]
    ) -> list[int]:
        """The series id of every point. Points of one batch share a few tags mappings (the
        SDK's reports carry one each, a caller's fixed tags one for all): each distinct (name,
        mapping) pair is looked up once, keyed on the mapping's id, which is safe while
        ``tags`` keeps every mapping alive, as it does for the whole call."""
        tag_ids = list(map(id, tags))
        try:
            keys = list(zip(names, tag_ids, strict=True))
            distinct = dict.fromkeys(keys)
        except TypeError as exc:
            raise InvalidInputError(
                f"metric names must be strings: {exc}; nothing of this batch was stored"
            ) from exc
        mapping_of = dict(zip(tag_ids, tags, strict=True))
        content: dict[tuple[str, int], tuple[str, tuple[tuple[str, str], ...]]] = {}
        for key in distinct:
            mapping = mapping_of[key[1]]
            if type(mapping) is not dict and not isinstance(mapping, Mapping):
                raise InvalidInputError(
                    f"metric {key[0]!r}: tags must be a mapping, got {type(mapping).__name__}; "
                    "nothing of this batch was stored"
                )
            content[key] = (key[0], tuple(mapping.items()))
        with self._lock:
            missing = {series for series in content.values() if series not in self._series_ids}
        if missing:
            self._create_series(missing)
        with self._lock:
            series_of = {key: self._series_ids[series] for key, series in content.items()}
        return list(map(series_of.__getitem__, keys))

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
        *,
        optimistic: bool = False,
    ) -> int:
        if optimistic:
            inserted = self._insert_points(connection, series_ids, stamps, values, point_ids,
                                           skip_stored=True)
            if inserted != len(point_ids):
                raise _AlreadyStoredError
            self._update_rollups(connection, series_ids, stamps, values)
            return inserted
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

    @staticmethod
    def _insert_points(
        connection: Connection,
        series_ids: NDArray[np.int64],
        stamps: NDArray[np.float64],
        values: NDArray[np.float64],
        point_ids: list[str | None],
        *,
        skip_stored: bool = False,
    ) -> int:
        """Insert the points; with ``skip_stored``, points whose id is stored already are
        skipped (``ON CONFLICT (point_id) DO NOTHING``). The number of rows inserted."""
        rows = list(zip(series_ids.tolist(), stamps.tolist(), values.tolist(), point_ids,
                        strict=True))
        return _executemany(connection, "points_skipping_stored" if skip_stored else "points",
                            rows)

    def _update_rollups(
        self,
        connection: Connection,
        series_ids: NDArray[np.int64],
        stamps: NDArray[np.float64],
        values: NDArray[np.float64],
    ) -> None:
        """Add the batch to its minute rollups and, with the same minute-to-hour mapping the
        queries use (``hour = minute // 60``), to its hour rollups; late points update the rows
        that already exist. One sort by (series, minute, bin) serves both."""
        minutes = np.floor(stamps / MINUTE).astype(np.int64)
        bins = encode_bins(values)
        order = np.lexsort((bins, minutes, series_ids))
        batch = _SortedBatch(series_ids[order], minutes[order], values[order], bins[order])
        self._update_minute_rollups(connection, batch)
        self._update_hour_rollups(connection, batch)

    @staticmethod
    def _update_minute_rollups(connection: Connection, batch: _SortedBatch) -> None:
        """Upsert the batch's (series, minute) rollups and (series, minute, bin) counts: one
        statement each, no read of the rows that already exist."""
        groups = _runs(batch.series_ids, batch.minutes)
        count, total, lowest, highest = _aggregate(groups, batch.values)
        bin_runs = _runs(batch.series_ids, batch.minutes, batch.bins)
        bin_counts = np.diff(np.r_[bin_runs, len(batch.bins)])
        rollups = list(zip(
            batch.series_ids[groups].tolist(), batch.minutes[groups].tolist(), count.tolist(),
            total.tolist(), lowest.tolist(), highest.tolist(), strict=True,
        ))
        _executemany(connection, "minute_rollups", rollups)
        bins = list(zip(
            batch.series_ids[bin_runs].tolist(), batch.minutes[bin_runs].tolist(),
            batch.bins[bin_runs].tolist(), bin_counts.tolist(), strict=True,
        ))
        _executemany(connection, "rollup_bins", bins)

    @staticmethod
    def _update_hour_rollups(connection: Connection, batch: _SortedBatch) -> None:
        """Merge the batch into its hour rows. The existing rows are read ``FOR UPDATE`` (a
        no-op on SQLite, whose writers are serialized), so a concurrent writer to the same hour
        waits and then merges into the sketch this one wrote instead of overwriting it."""
        h = metric_hour_rollups.c
        hours = batch.minutes // _PER_HOUR  # still sorted: the minutes are, within a series
        groups = _runs(batch.series_ids, hours)
        count, total, lowest, highest = _aggregate(groups, batch.values)
        stops = [*groups[1:].tolist(), len(hours)]
        low, high = int(hours.min()), int(hours.max())
        existing: dict[tuple[int, int], bytes] = {}
        for chunk in _chunks(np.unique(batch.series_ids).tolist()):
            rows = connection.execute(
                sa.select(h.series_id, h.hour, h.sketch)
                .where(h.series_id.in_(chunk), h.hour.between(low, high))
                .order_by(h.series_id, h.hour)
                .with_for_update()
            )
            existing.update(((int(sid), int(hour)), bytes(sketch)) for sid, hour, sketch in rows)

        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for sid, hour, n, s, lo, hi, start, stop in zip(
            batch.series_ids[groups].tolist(), hours[groups].tolist(), count.tolist(),
            total.tolist(), lowest.tolist(), highest.tolist(), groups.tolist(), stops,
            strict=True,
        ):
            new_bins = batch.bins[start:stop]
            new_counts = np.ones(len(new_bins), dtype=np.int64)
            stored = existing.get((sid, hour))
            if stored is None:
                inserts.append({"series_id": sid, "hour": hour, "count": n, "sum": s,
                                "min": lo, "max": hi, "sketch": pack_sketch(new_bins, new_counts)})
                continue
            old_bins, old_counts = unpack_sketch(stored)
            sketch = pack_sketch(np.concatenate((old_bins, new_bins)),
                                 np.concatenate((old_counts, new_counts)))
            updates.append({"b_sid": sid, "b_hour": hour, "b_count": n, "b_sum": s,
                            "b_min": lo, "b_max": hi, "b_sketch": sketch})
        if updates:
            connection.execute(
                metric_hour_rollups.update()
                .where(h.series_id == sa.bindparam("b_sid"), h.hour == sa.bindparam("b_hour"))
                .values(**_merged_stats(h),
                        sketch=sa.bindparam("b_sketch", type_=sa.LargeBinary)),
                updates,
            )
        if inserts:
            connection.execute(metric_hour_rollups.insert(), inserts)

    # ------------------------------------------------------------------ series lookup

    def _matching_series(
        self, connection: Connection, metric: str, filter: TagFilter | None
    ) -> dict[int, dict[str, str]]:
        rows = connection.execute(_SERIES_BY_NAME, {"name": metric}).all()
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
        rows = dict(connection.execute(_HORIZONS).all())
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
        filter: TagFilter | None = None,
        group_by: Sequence[str] = (),
        resolution: Resolution = "auto",
    ) -> list[AggregateResult]:
        """Aggregate points with ``start <= timestamp < end``, one result per group.

        ``resolution="raw"`` forces raw points, ``"rollup"`` forces whole hours from the hour
        rollups, whole minutes from the minute rollups and raw points for the partial minutes
        at the edges. An ungrouped query always answers one result (``value`` is ``None`` when
        no point matched, ``0`` for ``count``); a grouped one answers the groups that have
        points. Series without one of the ``group_by`` tags belong to no group.
        """
        if aggregation not in _AGGREGATIONS:
            raise InvalidInputError(
                f"unknown aggregation {aggregation!r}; expected one of {', '.join(_AGGREGATIONS)}"
            )
        if not end > start:
            raise InvalidInputError(f"query window is empty: start {start} >= end {end}")
        group_by = tuple(group_by)
        self._ensure_hour_rollups()
        try:
            with self.engine.connect() as connection:
                series = self._matching_series(connection, metric, filter)
                groups = self._groups(series, group_by)
                horizons = self._horizons(connection)
                if self._use_rollups(start, end, resolution, horizons):
                    plan = self._plan(start, end, horizons)
                else:
                    plan = _Plan(raw=((start, end),))
                if aggregation in _QUANTILES:
                    values = self._quantiles(connection, groups, plan, _QUANTILES[aggregation])
                else:
                    stats = self._stats(connection, groups, plan)
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
        self, start: float, end: float, resolution: Resolution, horizons: tuple[float, float]
    ) -> bool:
        if resolution == "raw":
            return False
        if resolution == "rollup":
            return True
        if end - start > self.raw_query_limit:
            return True
        return start < horizons[0]

    @staticmethod
    def _plan(
        start: float, end: float, horizons: tuple[float, float], *, hours: bool = True
    ) -> _Plan:
        """Raw edge ranges, whole minutes and whole hours for ``[start, end)``: edges older than
        the raw horizon widen to their whole minute; whole hours come from the hour rollups
        (when ``hours``) except those that began before the rollup horizon's minute, whose
        surviving minutes are read from the minute rollups as if there were no hour rollups."""
        raw_horizon, rollup_horizon = horizons
        m0, m1 = math.ceil(start / MINUTE), math.floor(end / MINUTE)
        edges: list[tuple[float, float]] = []
        if m0 >= m1:
            if start >= raw_horizon:
                return _Plan(raw=((start, end),))
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
        h0, h1 = -(-m0 // _PER_HOUR), m1 // _PER_HOUR
        if math.isfinite(rollup_horizon):
            purged_before = math.floor(rollup_horizon / MINUTE)  # minutes below are purged
            h0 = max(h0, -(-purged_before // _PER_HOUR))
        if not hours or h1 <= h0:
            return _Plan(raw=tuple(edges), minutes=((m0, m1),))
        minutes = tuple(
            (lo, hi) for lo, hi in ((m0, h0 * _PER_HOUR), (h1 * _PER_HOUR, m1)) if hi > lo
        )
        return _Plan(raw=tuple(edges), minutes=minutes, hours=((h0, h1),))

    def _stats(
        self,
        connection: Connection,
        groups: Mapping[int, tuple[str, ...]],
        plan: _Plan,
    ) -> dict[tuple[str, ...], _Stats]:
        """count/sum/min/max per group: one ``UNION ALL`` statement per chunk of series."""
        stats: dict[tuple[str, ...], _Stats] = {}
        if not any(plan.shape):
            return stats
        statement = _stats_statement(*plan.shape)
        for chunk in _chunks(sorted(groups)):
            for sid, count, total, low, high in connection.execute(
                statement, plan.parameters(chunk)
            ).all():
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
        plan: _Plan,
    ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """(series id, value) of every raw point in the plan's raw ranges."""
        sids: list[int] = []
        values: list[float] = []
        if plan.raw:
            statement = _raw_values_statement(len(plan.raw))
            for chunk in _chunks(ids):
                for sid, value in connection.execute(statement, plan.parameters(chunk)).all():
                    sids.append(sid)
                    values.append(value)
        return np.asarray(sids, dtype=np.int64), np.asarray(values, dtype=np.float64)

    def _quantiles(
        self,
        connection: Connection,
        groups: Mapping[int, tuple[str, ...]],
        plan: _Plan,
        q: float,
    ) -> dict[tuple[str, ...], tuple[float | None, int]]:
        ids = sorted(groups)
        results: dict[tuple[str, ...], tuple[float | None, int]] = {}
        if not plan.minutes and not plan.hours:
            sids, values = self._raw_values(connection, ids, plan)
            for key, group_values in self._split_by_group(groups, sids, values).items():
                results[key] = (float(np.percentile(group_values, q * 100)), len(group_values))
            return results
        stats = self._stats(connection, groups, plan)
        # per group: bins and counts from the minute bin rows, the hour sketches and the raw
        # edges; a bin may repeat across pieces (merged by merge_bins)
        bin_pieces: dict[tuple[str, ...], list[NDArray[np.int64]]] = {}
        count_pieces: dict[tuple[str, ...], list[NDArray[np.int64]]] = {}

        def add(key: tuple[str, ...], bins: NDArray[np.int64], counts: NDArray[np.int64]) -> None:
            bin_pieces.setdefault(key, []).append(bins)
            count_pieces.setdefault(key, []).append(counts)

        for chunk in _chunks(ids):
            parameters = plan.parameters(chunk)
            if plan.minutes:
                rows = connection.execute(
                    _minute_bins_statement(len(plan.minutes)), parameters
                ).all()
                if rows:
                    data = _matrix(rows, 3, np.int64)
                    for sid in np.unique(data[:, 0]).tolist():
                        mine = data[data[:, 0] == sid]
                        add(groups[sid], mine[:, 1], mine[:, 2])
            if plan.hours:
                sketches: dict[int, list[bytes]] = {}
                for sid, sketch in connection.execute(
                    _hour_sketches_statement(len(plan.hours)), parameters
                ).all():
                    sketches.setdefault(int(sid), []).append(bytes(sketch))
                for sid, parts in sketches.items():
                    add(groups[sid], *unpack_sketch(b"".join(parts)))
        if plan.raw:
            sids, values = self._raw_values(connection, ids, plan)
            for key, group_values in self._split_by_group(groups, sids, values).items():
                add(key, encode_bins(group_values), np.ones(len(group_values), dtype=np.int64))
        for key, pieces in bin_pieces.items():
            group_stats = stats.get(key)
            if group_stats is None or group_stats.count == 0:
                continue
            bins, counts = merge_bins(np.concatenate(pieces), np.concatenate(count_pieces[key]))
            value = sketch_quantile(bins, counts, q, low=group_stats.low, high=group_stats.high)
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
        filter: TagFilter | None = None,
    ) -> list[SeriesPoint]:
        """Buckets ``[start + k·step, start + (k+1)·step)`` that hold points. With a whole-minute
        ``step`` and a minute-aligned ``start`` over a long or old range, whole minutes come from
        the minute rollups (whole hours from the hour rollups when ``step`` and ``start`` are
        whole hours too)."""
        if step <= 0:
            raise InvalidInputError(f"series step must be positive, got {step}")
        if not end > start:
            raise InvalidInputError(f"series window is empty: start {start} >= end {end}")
        buckets = math.ceil((end - start) / step)
        count = np.zeros(buckets, dtype=np.int64)
        total = np.zeros(buckets)
        low = np.full(buckets, np.inf)
        high = np.full(buckets, -np.inf)

        def accumulate(data: NDArray[np.float64]) -> None:
            """Rows of (bucket start in seconds, count, sum, min, max)."""
            index = np.clip(((data[:, 0] - start) // step).astype(np.int64), 0, buckets - 1)
            np.add.at(count, index, data[:, 1].astype(np.int64))
            np.add.at(total, index, data[:, 2])
            np.minimum.at(low, index, data[:, 3])
            np.maximum.at(high, index, data[:, 4])

        p, r, h = metric_points.c, metric_rollups.c, metric_hour_rollups.c
        self._ensure_hour_rollups()
        try:
            with self.engine.connect() as connection:
                ids = sorted(self._matching_series(connection, metric, filter))
                plan = _Plan(raw=((start, end),))
                horizons = self._horizons(connection)
                if (step % MINUTE == 0 and start % MINUTE == 0
                        and self._use_rollups(start, end, "auto", horizons)):
                    hourly = step % HOUR == 0 and start % HOUR == 0
                    plan = self._plan(start, end, horizons, hours=hourly)
                for chunk in _chunks(ids):
                    for lo, hi in plan.raw:
                        rows = connection.execute(
                            sa.select(p.timestamp, p.value).where(
                                p.series_id.in_(chunk), p.timestamp >= lo, p.timestamp < hi
                            )
                        ).all()
                        if rows:
                            data = _matrix(rows, 2, np.float64)
                            ones = np.ones(len(data))
                            accumulate(np.column_stack(
                                (data[:, 0], ones, data[:, 1], data[:, 1], data[:, 1])
                            ))
                    for table, column, seconds, ranges in (
                        (r, r.minute, MINUTE, plan.minutes), (h, h.hour, HOUR, plan.hours)
                    ):
                        for lo_bucket, hi_bucket in ranges:
                            rollup_rows = connection.execute(
                                sa.select(column * seconds, table.count, table.sum, table.min,
                                          table.max).where(
                                    table.series_id.in_(chunk), column >= lo_bucket,
                                    column < hi_bucket,
                                )
                            ).all()
                            if rollup_rows:
                                accumulate(_matrix(rollup_rows, 5, np.float64))
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
        filter: TagFilter | None = None,
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
        filter: TagFilter | None = None,
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
        """Delete raw points older than ``now - raw_retention``, minute rollups whose minute
        ended before ``now - rollup_retention`` and hour rollups whose hour began before that
        minute; later queries over those ranges use what is left."""
        self._ensure_hour_rollups()
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
                # hours that began before that minute are never read again (see _plan)
                first_hour = -(-last_minute // _PER_HOUR)
                hours_deleted = connection.execute(
                    metric_hour_rollups.delete().where(metric_hour_rollups.c.hour < first_hour)
                ).rowcount
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
            hour_rollups=int(hours_deleted),
        )

    # ------------------------------------------------------------------ hour rollups

    def _ensure_hour_rollups(self) -> None:
        """Build the hour rollups from the minute rollups once, for a database written before
        hour rollups existed (or a new, empty one); later writes keep both in step.

        Runs with writers and other builders locked out (SQLite ``BEGIN IMMEDIATE``, a
        PostgreSQL ``SHARE ROW EXCLUSIVE`` lock on the minute rollups), rebuilds the hour table
        from scratch and records that in ``metric_store_state``, so concurrent stores build it
        once and lose nothing. Every process writing to the store must run a driftloop with hour
        rollups once it is built (an older writer would leave them behind)."""
        if self._hour_rollups_ready:
            return
        state = metric_store_state.c
        marker = sa.select(state.value).where(state.key == _HOUR_ROLLUPS)
        try:
            with self.engine.connect() as connection:
                if connection.execute(marker).first() is not None:
                    self._hour_rollups_ready = True
                    return
            for attempt in range(_WRITE_ATTEMPTS):
                try:
                    with self.engine.begin() as connection:
                        if self.database.dialect == "sqlite":
                            connection.exec_driver_sql("BEGIN IMMEDIATE")
                        elif self.database.dialect == "postgresql":
                            connection.execute(sa.text(
                                "LOCK TABLE metric_rollups, metric_rollup_bins "
                                "IN SHARE ROW EXCLUSIVE MODE"
                            ))
                        if connection.execute(marker).first() is None:
                            self._build_hour_rollups(connection)
                    break
                except SqlIntegrityError as exc:
                    if attempt == _WRITE_ATTEMPTS - 1:
                        raise ConflictError(
                            f"building the hour rollups kept colliding with another store: "
                            f"{exc.orig}"
                        ) from exc
        except OperationalError as exc:
            raise BackendUnavailableError(
                f"metric store {self.database.safe_url}: {exc.orig}"
            ) from exc
        self._hour_rollups_ready = True

    @staticmethod
    def _build_hour_rollups(connection: Connection) -> None:
        """Every series' hour rollups from its minute rollups: count/sum/min/max with one
        ``INSERT ... SELECT``, then the sketches series by series (bounded memory)."""
        r, b, h = metric_rollups.c, metric_rollup_bins.c, metric_hour_rollups.c

        def hour_of(minute: sa.ColumnElement[int]) -> sa.ColumnElement[int]:
            # floor division that truncating SQL integer division gets right for any sign
            return (minute - (minute % _PER_HOUR + _PER_HOUR) % _PER_HOUR) // _PER_HOUR

        connection.execute(metric_hour_rollups.delete())
        rollup_hour = hour_of(r.minute).label("hour")
        connection.execute(
            metric_hour_rollups.insert().from_select(
                ["series_id", "hour", "count", "sum", "min", "max", "sketch"],
                sa.select(r.series_id, rollup_hour, sa.func.sum(r.count), sa.func.sum(r.sum),
                          sa.func.min(r.min), sa.func.max(r.max),
                          sa.literal(b"", type_=sa.LargeBinary))
                .group_by(r.series_id, rollup_hour),
            )
        )
        bin_hour = hour_of(b.minute).label("hour")
        series_ids = connection.execute(sa.select(metric_series.c.series_id)).scalars().all()
        for series_id in sorted(int(s) for s in series_ids):
            rows = connection.execute(
                sa.select(bin_hour, b.bin, sa.func.sum(b.count))
                .where(b.series_id == series_id)
                .group_by(bin_hour, b.bin)
                .order_by(bin_hour)
            ).all()
            if not rows:
                continue
            data = _matrix(rows, 3, np.int64)
            starts = np.flatnonzero(np.r_[True, data[1:, 0] != data[:-1, 0]]).tolist()
            stops = [*starts[1:], len(data)]
            connection.execute(
                metric_hour_rollups.update()
                .where(h.series_id == series_id, h.hour == sa.bindparam("b_hour"))
                .values(sketch=sa.bindparam("b_sketch", type_=sa.LargeBinary)),
                [
                    {"b_hour": int(data[start, 0]),
                     "b_sketch": pack_sketch(data[start:stop, 1], data[start:stop, 2])}
                    for start, stop in zip(starts, stops, strict=True)
                ],
            )
        connection.execute(metric_store_state.insert().values(key=_HOUR_ROLLUPS, value=1.0))
