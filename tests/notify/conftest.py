from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from driftloop.database.core import Database
from notify.fake_services import FakeApiServer, running_server


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'driftloop.db'}")
    db.migrate()
    yield db
    db.dispose()


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with running_server() as fake:
        yield fake
