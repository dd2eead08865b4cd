"""Stores for the migration tests, on SQLite and (marked ``postgres``) on a fresh PostgreSQL
database: an empty one, and one holding the release-1 fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from database.release_1 import copy_fixture, load_into_postgres
from servicekit import BOTH_BACKENDS


@pytest.fixture(params=BOTH_BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


@pytest.fixture(params=BOTH_BACKENDS)
def release_1_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a store that release 1 wrote (the fixture), on either backend."""
    if request.param == "sqlite":
        return copy_fixture(tmp_path)
    url: str = request.getfixturevalue("fresh_postgres_url")
    load_into_postgres(url)
    return url
