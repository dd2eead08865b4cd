"""The release-1 fixture on either backend, and what the tests compare: every row of every
release-1 table, and a database's structure as the backend reports it.

``fixtures/release-1.db`` is a SQLite store written by release 1 (see
``make_release_1_fixture.py``). On PostgreSQL the same store is rebuilt from it: the schema from
revision 0001's frozen copy of release 1's tables (``create_all``, exactly what release 1 ran),
then every row copied over, sequences moved past the copied ids.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from driftloop.database.core import VERSION_TABLE
from driftloop.database.migrations.versions.r0001_release_1 import metadata as release_1

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "release-1.db"

Rows = dict[str, list[tuple[Any, ...]]]


def copy_fixture(directory: Path, name: str = "release-1.db") -> str:
    """A copy of the fixture in ``directory``; its SQLite URL."""
    target = directory / name
    shutil.copyfile(FIXTURE, target)
    return f"sqlite:///{target}"


def _normal(value: Any) -> Any:
    """One value as both backends compare: datetimes aware in UTC (SQLite keeps them naive),
    bytes as bytes."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, memoryview):
        return value.tobytes()
    return value


def read_rows(connection: sa.Connection, *, skip: tuple[str, ...] = ("driftloop_schema",)) -> Rows:
    """Every release-1 column of every release-1 table, rows in primary-key order."""
    rows: Rows = {}
    for table in release_1.sorted_tables:
        if table.name in skip:
            continue
        order = list(table.primary_key.columns)
        rows[table.name] = [
            tuple(_normal(v) for v in row)
            for row in connection.execute(sa.select(table).order_by(*order))
        ]
    return rows


def fixture_rows() -> Rows:
    engine = sa.create_engine(f"sqlite:///file:{FIXTURE}?mode=ro&uri=true")
    try:
        with engine.connect() as connection:
            return read_rows(connection)
    finally:
        engine.dispose()


def load_into_postgres(url: str) -> None:
    """Make the database at ``url`` (empty) what release 1 would have: its tables and the
    fixture's rows, ``driftloop_schema`` included."""
    source = sa.create_engine(f"sqlite:///file:{FIXTURE}?mode=ro&uri=true")
    target = sa.create_engine(url)
    try:
        with source.connect() as reading, target.begin() as writing:
            release_1.create_all(writing, checkfirst=False)
            for table in release_1.sorted_tables:
                data = [
                    {key: _normal(value) for key, value in row.items()}
                    for row in reading.execute(sa.select(table)).mappings()
                ]
                if data:
                    writing.execute(table.insert(), data)
                key = list(table.primary_key.columns)
                if len(key) != 1:
                    continue
                sequence = writing.execute(
                    sa.text("SELECT pg_get_serial_sequence(:t, :c)"),
                    {"t": table.name, "c": key[0].name},
                ).scalar()
                if sequence is not None and data:
                    writing.execute(
                        sa.text(
                            f'SELECT setval(:s, (SELECT max("{key[0].name}") FROM "{table.name}"))'
                        ),
                        {"s": sequence},
                    )
    finally:
        source.dispose()
        target.dispose()


def structure(connection: sa.Connection, *, constraint_names: bool = True) -> dict[str, Any]:
    """Each table's columns (name, type, nullable, server default, in order), primary key,
    unique constraints, indexes and foreign keys, as the backend reports them. Without
    ``constraint_names``, unique constraints are compared by their columns only."""
    inspector = sa.inspect(connection)
    dialect = connection.dialect
    tables: dict[str, Any] = {}
    for name in sorted(inspector.get_table_names()):
        uniques = inspector.get_unique_constraints(name)
        tables[name] = {
            "columns": [
                (c["name"], c["type"].compile(dialect=dialect), c["nullable"], c.get("default"))
                for c in inspector.get_columns(name)
            ],
            "primary_key": inspector.get_pk_constraint(name)["constrained_columns"],
            "unique": sorted(
                ((u["name"] if constraint_names else None), tuple(u["column_names"]))
                for u in uniques
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(name)
                if not i.get("duplicates_constraint")
            ),
            "foreign_keys": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                for f in inspector.get_foreign_keys(name)
            ),
        }
    return tables


def revision_rows(connection: sa.Connection) -> tuple[list[str], list[int]]:
    """The version table's revisions and ``driftloop_schema``'s versions."""
    revisions = connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))
    versions = connection.execute(sa.text("SELECT version FROM driftloop_schema"))
    return [str(r) for r in revisions.scalars()], [int(v) for v in versions.scalars()]
