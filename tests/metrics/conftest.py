"""The metric store's tests run on SQLite and, with the ``postgres`` marker, on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from driftloop.store import Database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'metrics.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    db = Database(url)
    db.migrate()
    try:
        yield db
    finally:
        db.dispose()
