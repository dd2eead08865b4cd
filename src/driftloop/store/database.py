"""One SQLAlchemy engine per store URL, and the migrations that create every component's tables.

Components declare their tables on :data:`METADATA` in their own ``tables.py``; the module list
in :data:`TABLE_MODULES` is the one place that says which exist.
"""

from __future__ import annotations

import importlib
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from driftloop.backends import BackendFamily
from driftloop.errors import BackendUnavailableError, ConfigError

METADATA = sa.MetaData()

TABLE_MODULES: tuple[str, ...] = (
    "driftloop.registry.tables",
    "driftloop.metrics.tables",
    "driftloop.monitors.tables",
    "driftloop.notify.tables",
    "driftloop.pipeline.tables",
    "driftloop.serving.tables",
)

SCHEMA_VERSION = 1

schema_versions = sa.Table(
    "driftloop_schema",
    METADATA,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)


def _sqlite_engine(url: str, base_dir: Path | None = None) -> Engine:
    path = url.removeprefix("sqlite:///")
    if path and path != ":memory:":
        file = Path(path)
        if not file.is_absolute() and base_dir is not None:
            file = base_dir / file
        file.parent.mkdir(parents=True, exist_ok=True)
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
STORES.register("sqlite", "driftloop.store.database:_sqlite_engine")
STORES.register(
    "postgresql+psycopg",
    "driftloop.store.database:_postgres_engine",
    requires=("psycopg",),
    extra="postgres",
)
STORES.register(
    "postgresql", "driftloop.store.database:_postgres_engine", requires=("psycopg",),
    extra="postgres",
)


class Database:
    """A store URL's engine with its schema migrated."""

    def __init__(self, url: str, *, base_dir: Path | None = None) -> None:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        self.url = url
        self.engine: Engine = STORES.create(url, base_dir)
        self.dialect = self.engine.dialect.name

    def migrate(self) -> int:
        """Bring an empty or older database to :data:`SCHEMA_VERSION`; safe to run concurrently."""
        for module in TABLE_MODULES:
            importlib.import_module(module)
        try:
            with self.engine.begin() as connection:
                if self.dialect == "postgresql":
                    connection.execute(sa.text("SELECT pg_advisory_xact_lock(7215536)"))
                elif self.dialect == "sqlite":
                    # take the write lock first, so concurrent migrations run one at a time
                    # (DDL and the version row in one transaction) instead of racing
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                METADATA.create_all(connection, checkfirst=True)
                current = connection.execute(
                    sa.select(sa.func.max(schema_versions.c.version))
                ).scalar()
                if current is None or current < SCHEMA_VERSION:
                    connection.execute(
                        schema_versions.insert().values(
                            version=SCHEMA_VERSION, applied_at=datetime.now(UTC)
                        )
                    )
                elif current > SCHEMA_VERSION:
                    raise ConfigError(
                        f"the store {self.safe_url} has schema version {current}, newer than "
                        f"this driftloop ({SCHEMA_VERSION}); upgrade driftloop"
                    )
        except OperationalError as exc:
            raise BackendUnavailableError(
                f"cannot reach the store {self.safe_url}: {exc.orig}"
            ) from exc
        except SQLAlchemyError as exc:
            raise BackendUnavailableError(f"store {self.safe_url}: {exc}") from exc
        return SCHEMA_VERSION

    @property
    def safe_url(self) -> str:
        """The URL with any password masked, for messages and logs."""
        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()


_cache: dict[tuple[str, str], Database] = {}
_cache_lock = threading.Lock()


def open_database(url: str, *, base_dir: Path | None = None) -> Database:
    """The migrated :class:`Database` for a URL, shared within the process."""
    key = (url, str(base_dir))
    with _cache_lock:
        database = _cache.get(key)
        if database is None:
            database = Database(url, base_dir=base_dir)
            database.migrate()
            _cache[key] = database
        return database
