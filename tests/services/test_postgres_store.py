"""driftloop's store on a real PostgreSQL started by scripts/services/postgres.sh."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from driftloop.database import METADATA, Database
from driftloop.database.core import SCHEMA_VERSION, schema_versions
from driftloop.errors import BackendUnavailableError

pytestmark = pytest.mark.postgres


def test_session_database_is_reachable(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    assert postgres_url.endswith("/driftloop")
    database = Database(postgres_url)
    try:
        with database.engine.connect() as connection:
            assert connection.execute(sa.text("SELECT current_database()")).scalar() == "driftloop"
        assert database.dialect == "postgresql"
    finally:
        database.dispose()


def test_migrate_from_empty_twice(fresh_postgres_url: str) -> None:
    database = Database(fresh_postgres_url)
    try:
        assert sa.inspect(database.engine).get_table_names() == []
        assert database.migrate() == SCHEMA_VERSION
        assert database.migrate() == SCHEMA_VERSION
        tables = set(sa.inspect(database.engine).get_table_names())
        assert set(METADATA.tables) <= tables
        with database.engine.connect() as connection:
            rows = connection.execute(sa.select(schema_versions.c.version)).scalars().all()
        assert rows == [SCHEMA_VERSION]
    finally:
        database.dispose()


def test_concurrent_migrations_from_two_threads(fresh_postgres_url: str) -> None:
    databases = [Database(fresh_postgres_url), Database(fresh_postgres_url)]
    barrier = threading.Barrier(len(databases))
    results: list[int] = []
    errors: list[BaseException] = []

    def migrate(database: Database) -> None:
        barrier.wait(timeout=10)
        try:
            results.append(database.migrate())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(db,)) for db in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        assert results == [SCHEMA_VERSION, SCHEMA_VERSION]
        with databases[0].engine.connect() as connection:
            count = connection.execute(sa.select(sa.func.count()).select_from(schema_versions))
            assert count.scalar() == 1
    finally:
        for database in databases:
            database.dispose()


def test_write_and_read_a_row(fresh_postgres_url: str) -> None:
    database = Database(fresh_postgres_url)
    database.migrate()
    notes = sa.Table(
        "service_test_notes",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
    )
    reader = Database(fresh_postgres_url)
    try:
        with database.engine.begin() as connection:
            notes.create(connection)
            connection.execute(notes.insert(), [{"model": "churn", "confidence": 0.87}])
        with reader.engine.connect() as connection:
            row = connection.execute(sa.select(notes.c.model, notes.c.confidence)).one()
        assert (row.model, row.confidence) == ("churn", pytest.approx(0.87))
    finally:
        reader.dispose()
        database.dispose()


def test_unreachable_server_is_a_backend_error(postgres_url: str) -> None:
    url = sa.engine.make_url(postgres_url).set(port=1).render_as_string(hide_password=False)
    database = Database(url)
    try:
        with pytest.raises(BackendUnavailableError, match="cannot reach the store"):
            database.migrate()
    finally:
        database.dispose()
