"""The leadership tests run on SQLite and, with the ``postgres`` marker, on PostgreSQL: one
migrated database per backend for the module (each test leads roles of its own names)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from driftloop.database import Database
from servicekit import BOTH_BACKENDS


@pytest.fixture(scope="module", params=BOTH_BACKENDS)
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path_factory.mktemp('lease') / 'driftloop.db'}")
        db.migrate()
        yield db
        db.dispose()
        return
    server = sa.engine.make_url(request.getfixturevalue("postgres_url"))
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    db = Database(server.set(database=name).render_as_string(False))
    try:
        db.migrate()
        yield db
    finally:
        db.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def role() -> str:
    """A role name of the test's own in the module's database."""
    return f"role-{uuid.uuid4().hex[:8]}"
