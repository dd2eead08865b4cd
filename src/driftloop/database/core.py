"""One SQLAlchemy engine per store URL, and the versioned schema (Alembic) every process checks
on start.

Components declare their tables on :data:`METADATA` in their own ``tables.py``; the module list
in :data:`TABLE_MODULES` is the one place that says which exist. The schema's history lives in
:mod:`driftloop.database.migrations` (revision 0001 is release 1's schema, frozen); the revision a
database is at is in the table :data:`VERSION_TABLE`, and ``driftloop_schema`` keeps the schema
number (the revision as an integer) that releases before Alembic check.

On start (:func:`open_database`) a process compares the database's revision with
:data:`HEAD_REVISION`: an empty database is created at the head on every backend; an older one is
upgraded where auto-upgrade is on (SQLite by default; ``DRIFTLOOP_STORE_AUTO_UPGRADE``), else
refused with the command to run (``driftloop db upgrade``); a newer one is always refused.
Upgrades run one at a time (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL) in
one transaction with the revision check.
"""

from __future__ import annotations

import importlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from driftloop.backends import BackendFamily
from driftloop.errors import BackendUnavailableError, ConfigError

logger = logging.getLogger("driftloop.database")

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Names for the constraints and indexes that revisions from 0002 on create, so that a later
revision can name them (indexes keep SQLAlchemy's default ``ix_<table>_<column>``). Those of
release 1 (revision 0001) carry the backend's own names; see its module."""

METADATA = sa.MetaData(naming_convention=NAMING_CONVENTION)

TABLE_MODULES: tuple[str, ...] = (
    "driftloop.registry.tables",
    "driftloop.metrics.tables",
    "driftloop.monitors.tables",
    "driftloop.notify.tables",
    "driftloop.pipeline.tables",
    "driftloop.serving.tables",
    "driftloop.leadership.tables",
)

REVISIONS: tuple[str, ...] = ("0001", "0002", "0003", "0004", "0005", "0006", "0007")
"""Every revision of :mod:`driftloop.database.migrations`, oldest first (a test checks them)."""

HEAD_REVISION = REVISIONS[-1]

SCHEMA_VERSION = int(HEAD_REVISION)
"""The schema number of the head revision, kept in ``driftloop_schema``."""

VERSION_TABLE = "driftloop_alembic_version"
"""Alembic's version table, under a name of driftloop's own (a database may be shared with
another application that uses Alembic)."""

AUTO_UPGRADE_ENV = "DRIFTLOOP_STORE_AUTO_UPGRADE"
"""``1``/``true``: processes upgrade an older store on start, on any backend; ``0``/``false``:
never (not even SQLite); unset: SQLite only."""

UPGRADE_COMMAND = "driftloop db upgrade"

_ADVISORY_LOCK = 7215536
"""PostgreSQL advisory lock key of schema changes (release 1 took the same one)."""

schema_versions = sa.Table(
    "driftloop_schema",
    METADATA,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)


def import_table_modules() -> None:
    """Import every component's ``tables.py``, so that :data:`METADATA` holds every table."""
    for module in TABLE_MODULES:
        importlib.import_module(module)


SchemaState = Literal["empty", "release-1", "behind", "current", "ahead"]


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands against this driftloop's :data:`HEAD_REVISION`.

    ``state``: ``empty`` (no driftloop table), ``release-1`` (made by the release before
    Alembic: a ``driftloop_schema`` row, no revision), ``behind`` (an older revision),
    ``current`` (the head), ``ahead`` (a revision this driftloop does not know: made by a newer
    one)."""

    store: str
    state: SchemaState
    revision: str | None
    schema_version: int | None
    head: str = HEAD_REVISION

    @property
    def at_head(self) -> bool:
        return self.state == "current"

    @property
    def described(self) -> str:
        """The revision as a person reads it."""
        if self.state == "empty":
            return "empty (no schema)"
        if self.state == "release-1":
            return "release 1 (no revision)"
        if self.revision is None:
            return f"schema version {self.schema_version} (no revision)"
        return self.revision

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "revision": self.revision,
            "state": self.state,
            "head": self.head,
            "at_head": self.at_head,
            "schema_version": self.schema_version,
        }


@dataclass(frozen=True)
class SchemaUpgrade:
    """What :meth:`Database.upgrade` did: the status before, and the revision after."""

    before: SchemaStatus
    revision: str

    @property
    def changed(self) -> bool:
        return self.before.revision != self.revision

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.before.store,
            "from": self.before.revision,
            "from_state": self.before.state,
            "to": self.revision,
            "changed": self.changed,
        }


def _sqlite_engine(url: str, base_dir: Path | None = None) -> Engine:
    path = url.removeprefix("sqlite:///")
    if path and path != ":memory:":
        file = Path(path)
        if not file.is_absolute() and base_dir is not None:
            file = base_dir / file
        file.parent.mkdir(parents=True, exist_ok=True)
        if not file.exists():  # private from the start (SQLite's -wal and -shm files follow it)
            os.close(os.open(file, os.O_WRONLY | os.O_CREAT, 0o600))
        url = f"sqlite:///{file}"
    engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        # Switching a new database file to WAL takes a lock that SQLite's busy handler does not
        # wait for: processes opening the same new file at once get "database is locked".
        deadline = time.monotonic() + 30.0
        while True:
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def _postgres_engine(url: str, base_dir: Path | None = None) -> Engine:
    del base_dir
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


STORES: BackendFamily[Engine] = BackendFamily("store")
STORES.register("sqlite", "driftloop.database.core:_sqlite_engine")
STORES.register(
    "postgresql+psycopg",
    "driftloop.database.core:_postgres_engine",
    requires=("psycopg",),
    extra="postgres",
)
STORES.register(
    "postgresql",
    "driftloop.database.core:_postgres_engine",
    requires=("psycopg",),
    extra="postgres",
)


class Database:
    """A store URL's engine; :meth:`ensure_schema` (what :func:`open_database` runs on start)
    checks its schema revision, :meth:`upgrade` brings it to the head."""

    def __init__(self, url: str, *, base_dir: Path | None = None) -> None:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        self.url = url
        self.engine: Engine = STORES.create(url, base_dir)
        self.dialect = self.engine.dialect.name
        self.schema_upgrade: SchemaUpgrade | None = None
        """What :meth:`ensure_schema` upgraded on start (None: nothing)."""

    @property
    def safe_url(self) -> str:
        """The URL with any password masked (a SQLite path as opened), for messages and logs."""
        return self.engine.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ the schema's revision

    def schema_status(self) -> SchemaStatus:
        """The database's revision against the head; reads only (no lock, no DDL)."""
        with self._errors(), self.engine.connect() as connection:
            return self._read_status(connection)

    def ensure_schema(self, *, auto_upgrade: bool | None = None) -> SchemaUpgrade | None:
        """The start-up check: nothing when the database is at the head; create an empty one;
        upgrade an older one when ``auto_upgrade`` (default: :func:`auto_upgrade_default`),
        else refuse it with the command to run; refuse a newer one. Returns what it upgraded."""
        status = self.schema_status()
        if status.at_head:
            return None
        self._refuse_newer(status)
        if status.state != "empty":
            allowed = auto_upgrade_default(self.dialect) if auto_upgrade is None else auto_upgrade
            if not allowed:
                raise ConfigError(
                    f"the store {self.safe_url} has schema {status.described}, older than this "
                    f"driftloop's {HEAD_REVISION}: run '{UPGRADE_COMMAND}' (with a role that may "
                    f"alter tables), or set {AUTO_UPGRADE_ENV}=1 to let processes upgrade it on "
                    "start"
                )
        self.schema_upgrade = self.upgrade()
        return self.schema_upgrade

    def upgrade(self, to: str = HEAD_REVISION) -> SchemaUpgrade:
        """Bring an empty or older database to revision ``to`` (default: the head; a release-1
        database is stamped 0001 first), one at a time across threads and processes; a database
        already there (or past it) is left alone. Refuses a newer database."""
        from driftloop.database import migrations

        if to not in REVISIONS:
            raise ConfigError(f"unknown schema revision {to!r}; known: {', '.join(REVISIONS)}")
        with _UPGRADE_LOCK, self._errors(upgrading=True), self._locked() as connection:
            before = self._read_status(connection)
            self._refuse_newer(before)
            if before.revision is not None and REVISIONS.index(before.revision) >= REVISIONS.index(
                to
            ):
                return SchemaUpgrade(before, before.revision)
            if before.state == "release-1":
                _adopt_release_1(connection, self.safe_url)
                migrations.stamp(connection, REVISIONS[0])
            migrations.upgrade(connection, to)
            after = self._read_status(connection)
            if after.revision != to:  # pragma: no cover - a revision that forgot something
                raise ConfigError(
                    f"the store {self.safe_url}: the upgrade ended at {after.described}, not {to}"
                )
        logger.info("store %s: schema upgraded from %s to %s", self.safe_url, before.described, to)
        return SchemaUpgrade(before, to)

    def downgrade(self, to: str) -> SchemaStatus:
        """Run the revisions' ``downgrade()`` down to ``to`` (``base``: drop every table); for
        development and tests, not offered by the command line. Returns the status after."""
        from driftloop.database import migrations

        if to != "base" and to not in REVISIONS:
            raise ConfigError(f"unknown schema revision {to!r}; known: {', '.join(REVISIONS)}")
        with _UPGRADE_LOCK, self._errors(upgrading=True), self._locked() as connection:
            before = self._read_status(connection)
            self._refuse_newer(before)
            if before.revision is None:
                raise ConfigError(f"the store {self.safe_url} has no revision to downgrade")
            migrations.downgrade(connection, to)
        return self.schema_status()

    def migrate(self) -> int:
        """:meth:`upgrade`, returning the schema number (:data:`SCHEMA_VERSION`)."""
        self.upgrade()
        return SCHEMA_VERSION

    def _refuse_newer(self, status: SchemaStatus) -> None:
        if status.state == "ahead":
            raise ConfigError(
                f"the store {self.safe_url} has schema {status.described}, which this driftloop "
                f"(head {HEAD_REVISION}) does not know: it was made by a newer driftloop; "
                "upgrade driftloop"
            )

    def _read_status(self, connection: Connection) -> SchemaStatus:
        names = set(sa.inspect(connection).get_table_names())
        schema_version: int | None = None
        if schema_versions.name in names:
            schema_version = connection.execute(
                sa.select(sa.func.max(schema_versions.c.version))
            ).scalar()
        if VERSION_TABLE in names:
            revisions = (
                connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))
                .scalars()
                .all()
            )
            if len(revisions) > 1:
                raise ConfigError(
                    f"the store {self.safe_url} has several schema revisions "
                    f"{sorted(revisions)}: not one made by driftloop"
                )
            if revisions:
                revision = str(revisions[0])
                state: SchemaState = (
                    "ahead"
                    if revision not in REVISIONS
                    else "current"
                    if revision == HEAD_REVISION
                    else "behind"
                )
                return SchemaStatus(self.safe_url, state, revision, schema_version)
        if schema_version is not None:
            state = "release-1" if schema_version <= 1 else "ahead"
            return SchemaStatus(self.safe_url, state, None, schema_version)
        ours = sorted(names & _release_1_table_names())
        if ours:
            raise ConfigError(
                f"the store {self.safe_url} has driftloop's tables ({', '.join(ours[:3])}"
                f"{', ...' if len(ours) > 3 else ''}) but no schema version: driftloop cannot "
                "tell what made them; use an empty database"
            )
        return SchemaStatus(self.safe_url, "empty", None, None)

    @contextmanager
    def _locked(self) -> Iterator[Connection]:
        """A connection in a transaction that holds the store's schema lock: SQLite's write lock
        (``BEGIN IMMEDIATE``, with foreign keys off for table rebuilds and checked before the
        commit), PostgreSQL's advisory lock (released by the commit)."""
        with self.engine.connect() as connection:
            if self.dialect != "sqlite":
                with connection.begin():
                    if self.dialect == "postgresql":
                        connection.execute(
                            sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK}
                        )
                    yield connection
                return
            # PRAGMA foreign_keys is a no-op inside a transaction: set it before BEGIN
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
            try:
                with connection.begin():
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                    yield connection
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise ConfigError(
                            f"the store {self.safe_url}: the upgrade would leave "
                            f"rows without their parent rows: {broken[:5]}"
                        )
            finally:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()

    @contextmanager
    def _errors(self, *, upgrading: bool = False) -> Iterator[None]:
        """SQLAlchemy's errors as driftloop's: unreachable → BackendUnavailableError, a role
        that may not change the schema → ConfigError with the command to run."""
        try:
            yield
        except OperationalError as exc:
            raise BackendUnavailableError(
                f"cannot reach the store {self.safe_url}: {exc.orig}"
            ) from exc
        except SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None)
            if upgrading and getattr(orig, "sqlstate", None) == "42501":
                raise ConfigError(
                    f"the store {self.safe_url}: this role may not create or alter tables "
                    f"({str(orig).strip()}); run '{UPGRADE_COMMAND}' with one that may"
                ) from exc
            raise BackendUnavailableError(f"store {self.safe_url}: {exc}") from exc


_UPGRADE_LOCK = threading.Lock()
"""Alembic's ``context``/``op`` are process-wide: one upgrade at a time per process."""


def auto_upgrade_default(dialect: str) -> bool:
    """Whether a process may upgrade an older store on start: ``$DRIFTLOOP_STORE_AUTO_UPGRADE``
    when set, else only an embedded SQLite store."""
    value = os.environ.get(AUTO_UPGRADE_ENV, "").strip().lower()
    if not value:
        return dialect == "sqlite"
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{AUTO_UPGRADE_ENV}={value!r}: expected 1/true/yes/on or 0/false/no/off")


def _release_1_table_names() -> set[str]:
    from driftloop.database.migrations.versions.r0001_release_1 import metadata

    return set(metadata.tables)


def _adopt_release_1(connection: Connection, store: str) -> None:
    """Make a release-1 database what revision 0001 makes: every release-1 table with every
    column. Tables that release 1 added while the database was in use (``create_all`` created
    them on the next start) are created; a table that lacks a column cannot be adopted."""
    from driftloop.database.migrations.versions.r0001_release_1 import metadata

    inspector = sa.inspect(connection)
    existing = set(inspector.get_table_names())
    missing = {
        table.name: sorted(
            set(table.columns.keys())
            - {column["name"] for column in inspector.get_columns(table.name)}
        )
        for table in metadata.sorted_tables
        if table.name in existing
    }
    missing = {name: columns for name, columns in missing.items() if columns}
    if missing:
        lacking = "; ".join(
            f"{table}: {', '.join(columns)}" for table, columns in sorted(missing.items())
        )
        raise ConfigError(
            f"the store {store} says schema version 1 but lacks columns of release 1 "
            f"({lacking}): it was made by an older development build and cannot be upgraded"
        )
    metadata.create_all(connection, checkfirst=True)


_cache: dict[tuple[str, str], Database] = {}
_cache_lock = threading.Lock()


def open_database(
    url: str, *, base_dir: Path | None = None, auto_upgrade: bool | None = None
) -> Database:
    """The :class:`Database` for a URL, shared within the process, its schema checked (and
    created or upgraded where allowed) by :meth:`Database.ensure_schema` on first use."""
    key = (url, str(base_dir))
    with _cache_lock:
        database = _cache.get(key)
        if database is None:
            database = Database(url, base_dir=base_dir)
            try:
                database.ensure_schema(auto_upgrade=auto_upgrade)
            except BaseException:
                database.dispose()
                raise
            _cache[key] = database
        return database
