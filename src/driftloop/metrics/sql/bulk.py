"""Bulk writes: the statements of the write path, compiled once per dialect and handed to the
driver with the rows as they are.

SQLAlchemy's per-row parameter processing would dominate the cost of a large batch, so rows go
to the driver directly: on SQLite in multi-row ``VALUES`` statements, so SQLite works through
hundreds of rows per call with Python's lock released (the reporting threads of the same process
keep running) instead of taking it back after every row; on PostgreSQL as one array per column
(``INSERT ... SELECT * FROM unnest(...)``), a whole batch in one round trip.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from driftloop.metrics.tables import metric_points, metric_rollup_bins, metric_rollups

MULTIROW_ROWS = 512
SQLITE_OLD_VARIABLES = 999
"""Bound parameters per statement before SQLite 3.32 (32,766 since)."""


def merged_stats(columns: Any, incoming: Any = None) -> dict[str, Any]:
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
    """An INSERT with this dialect's ``ON CONFLICT`` clauses (SQLite >= 3.24, PostgreSQL); each
    dialect's module is imported here, when a store of its kind writes (SQLAlchemy's PostgreSQL
    dialect alone costs a SQLite command such as ``driftloop status`` a tenth of a second)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def _upsert(
    dialect: str, table: sa.Table, keys: Sequence[str], merge: Callable[[Any, Any], dict[str, Any]]
) -> Any:
    """``INSERT ... ON CONFLICT (keys) DO UPDATE SET merge(row, excluded)`` for this dialect
    (SQLite >= 3.24 and PostgreSQL both speak it)."""
    insert = _dialect_insert(dialect, table)
    return insert.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys], set_=merge(table.c, insert.excluded)
    )


_POINT_COLUMNS = ("series_id", "timestamp", "value", "point_id")
_ROLLUP_COLUMNS = ("series_id", "minute", "count", "sum", "min", "max")
_BIN_COLUMNS = ("series_id", "minute", "bin", "count")
_WRITES: dict[str, tuple[Callable[[str], Any], Sequence[str]]] = {
    "points": (lambda dialect: metric_points.insert(), _POINT_COLUMNS),
    "points_skipping_stored": (
        lambda dialect: _dialect_insert(dialect, metric_points).on_conflict_do_nothing(
            index_elements=[metric_points.c.point_id]
        ),
        _POINT_COLUMNS,
    ),
    "minute_rollups": (
        lambda dialect: _upsert(dialect, metric_rollups, ("series_id", "minute"), merged_stats),
        _ROLLUP_COLUMNS,
    ),
    "rollup_bins": (
        lambda dialect: _upsert(
            dialect,
            metric_rollup_bins,
            ("series_id", "minute", "bin"),
            lambda row, new: {"count": row.count + new.count},
        ),
        _BIN_COLUMNS,
    ),
}
"""The statements of the write path, by name: a builder per dialect and the order of the
columns of the rows handed to :func:`executemany`."""


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
                f"VALUES {self.values_row}", "VALUES " + ", ".join([self.values_row] * count), 1
            )
        return sql


def _values_row(sql: str, placeholder: str, columns: int) -> str | None:
    """The parenthesized row after ``sql``'s only ``VALUES`` when it holds one ``placeholder``
    per column and nothing else binds parameters (so rows can be repeated); else None."""
    if sql.count("VALUES (") != 1 or sql.count(placeholder) != columns:
        return None
    start = sql.index("VALUES (") + len("VALUES ")
    end = sql.find(")", start)
    row = sql[start : end + 1]
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
    compiled = statement.compile(dialect=compiling, column_keys=list(columns), for_executemany=True)
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
            for column in columns
        )
        return _DriverStatement(
            sql.replace(f"VALUES {row}", f"SELECT * FROM unnest({arrays})", 1),
            columns,
            None,
            named=False,
            columnar=True,
        )
    if dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 32):
        rows_per_statement = SQLITE_OLD_VARIABLES // len(columns)
    else:
        rows_per_statement = MULTIROW_ROWS
    return _DriverStatement(
        sql, columns, None, named=False, rows_per_statement=rows_per_statement, values_row=row
    )


def _execute_multirow(
    connection: Connection, statement: _DriverStatement, rows: Sequence[tuple[Any, ...]]
) -> int:
    """``rows`` in multi-row ``VALUES`` statements of power-of-two sizes (so a few statement
    texts serve every batch size): SQLite then runs whole chunks in one step, with Python's
    lock released, instead of handing it back and forth once per row."""
    changed = 0
    start = 0
    while start < len(rows):
        size = min(statement.rows_per_statement, 1 << ((len(rows) - start).bit_length() - 1))
        result = connection.exec_driver_sql(
            statement.with_rows(size),
            tuple(itertools.chain.from_iterable(rows[start : start + size])),
        )
        changed += result.rowcount
        start += size
    return changed


def executemany(connection: Connection, name: str, rows: Sequence[tuple[Any, ...]]) -> int:
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
