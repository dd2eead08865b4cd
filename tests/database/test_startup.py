"""What a process does with the store's schema on start (:func:`open_database`): create an
empty store, upgrade an older embedded SQLite store, refuse an older PostgreSQL store with the
command to run (unless ``DRIFTLOOP_STORE_AUTO_UPGRADE`` allows it), refuse a newer store on every
backend, and run no DDL on a store at the head (a restricted PostgreSQL role starts). Two
processes starting on the same new or older store at once both start, and the schema changes
once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from database.release_1 import copy_fixture, fixture_rows, read_rows, revision_rows
from driftloop.database import Database, open_database
from driftloop.database.core import AUTO_UPGRADE_ENV, HEAD_REVISION, SCHEMA_VERSION, VERSION_TABLE
from driftloop.errors import ConfigError
from driftloop.serving.keys import ApiKeyStore, Scope

UPGRADE_HINT = "run 'driftloop db upgrade'"
NEWER = "made by a newer driftloop; upgrade driftloop"


@pytest.fixture(autouse=True)
def _no_auto_upgrade_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUTO_UPGRADE_ENV, raising=False)


def _status(url: str) -> tuple[str, str | None]:
    database = Database(url)
    try:
        status = database.schema_status()
        return status.state, status.revision
    finally:
        database.dispose()


def test_open_database_creates_an_empty_store_on_every_backend(empty_url: str) -> None:
    database = open_database(empty_url)
    try:
        assert database.schema_upgrade is not None
        assert database.schema_upgrade.before.state == "empty"
        assert _status(empty_url) == ("current", HEAD_REVISION)
        assert open_database(empty_url) is database  # checked once per process
    finally:
        database.dispose()


def test_an_older_sqlite_store_is_upgraded_on_start(tmp_path: Path) -> None:
    url = copy_fixture(tmp_path)
    database = open_database(url)
    try:
        assert database.schema_upgrade is not None
        assert database.schema_upgrade.before.state == "release-1"
        with database.engine.connect() as connection:
            assert read_rows(connection) == fixture_rows()
            assert revision_rows(connection) == ([HEAD_REVISION], [SCHEMA_VERSION])
    finally:
        database.dispose()


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_the_setting_can_forbid_upgrading_sqlite_on_start(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AUTO_UPGRADE_ENV, value)
    url = copy_fixture(tmp_path)
    with pytest.raises(ConfigError, match=UPGRADE_HINT) as refused:
        open_database(url)
    assert "release 1" in refused.value.message
    assert _status(url) == ("release-1", None)  # untouched
    # an empty store is still created
    database = open_database(f"sqlite:///{tmp_path / 'new.db'}")
    database.dispose()


def test_a_bad_setting_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTO_UPGRADE_ENV, "sometimes")
    with pytest.raises(ConfigError, match=AUTO_UPGRADE_ENV):
        open_database(copy_fixture(tmp_path))


@pytest.mark.postgres
def test_an_older_postgres_store_is_refused_with_the_command(
    fresh_postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from database.release_1 import load_into_postgres

    load_into_postgres(fresh_postgres_url)
    with pytest.raises(ConfigError, match=UPGRADE_HINT) as refused:
        open_database(fresh_postgres_url)
    assert AUTO_UPGRADE_ENV in refused.value.message
    assert _status(fresh_postgres_url) == ("release-1", None)

    # at revision 0001 (not release 1's own): refused the same way
    database = Database(fresh_postgres_url)
    try:
        database.upgrade(to="0001")
        with pytest.raises(ConfigError, match=UPGRADE_HINT):
            database.ensure_schema()
        assert _status(fresh_postgres_url) == ("behind", "0001")
        # the setting lets processes upgrade it on start
        monkeypatch.setenv(AUTO_UPGRADE_ENV, "1")
        upgrade = database.ensure_schema()
        assert upgrade is not None
        assert (upgrade.before.revision, upgrade.revision) == ("0001", HEAD_REVISION)
        with database.engine.connect() as connection:
            assert read_rows(connection) == fixture_rows()
    finally:
        database.dispose()


@pytest.mark.parametrize("how", ["revision", "schema_version"])
def test_a_newer_store_is_refused_on_every_backend(
    empty_url: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = Database(empty_url)
    try:
        database.upgrade()
        with database.engine.begin() as connection:
            if how == "revision":
                connection.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))
            else:  # a newer schema without our version table (not one this driftloop knows)
                connection.execute(sa.text(f"DROP TABLE {VERSION_TABLE}"))
                connection.execute(sa.text("UPDATE driftloop_schema SET version = 99"))
        monkeypatch.setenv(AUTO_UPGRADE_ENV, "1")  # never a reason to touch a newer store
        for attempt in (database.ensure_schema, database.upgrade):
            with pytest.raises(ConfigError, match=NEWER):
                attempt()
        with pytest.raises(ConfigError, match=NEWER):
            open_database(empty_url)
    finally:
        database.dispose()


def test_driftloop_tables_without_a_version_are_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'odd.db'}"
    database = Database(url)
    try:
        with database.engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE incidents (incident_id TEXT)"))
        with pytest.raises(ConfigError, match="no schema version"):
            database.ensure_schema()
    finally:
        database.dispose()


@pytest.mark.postgres
def test_a_role_that_may_not_create_tables_starts_on_a_store_at_head(
    fresh_postgres_url: str, postgres_url: str
) -> None:
    """No DDL on start: a role with only read/write rights opens an up-to-date store and
    writes; on an older store it is told the command; its own upgrade names the problem."""
    older_url = _other_database(postgres_url)
    role = f"app_{uuid.uuid4().hex[:8]}"
    try:
        admin = Database(fresh_postgres_url)
        admin.migrate()
        admin.dispose()
        from database.release_1 import load_into_postgres

        load_into_postgres(older_url)
        for url in (fresh_postgres_url, older_url):
            _grant_read_write(url, role)

        as_role = _as_role(fresh_postgres_url, role)
        database = open_database(as_role)
        assert database.schema_upgrade is None
        assert ApiKeyStore(database).create(Scope.PREDICT, name="restricted").key
        database.dispose()

        older_as_role = _as_role(older_url, role)
        with pytest.raises(ConfigError, match=UPGRADE_HINT):
            open_database(older_as_role)
        restricted = Database(older_as_role)
        with pytest.raises(ConfigError, match="may not create or alter tables"):
            restricted.upgrade()
        restricted.dispose()
        assert _status(older_url) == ("release-1", None)  # rolled back whole
    finally:
        _drop(postgres_url, older_url, role)


def _other_database(postgres_url: str) -> str:
    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(
        sa.engine.make_url(postgres_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.engine.make_url(postgres_url).set(database=name).render_as_string(False)


def _grant_read_write(url: str, role: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        exists = connection.execute(
            sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
        ).scalar()
        if not exists:
            connection.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
        connection.execute(sa.text(f'REVOKE CREATE ON SCHEMA public FROM PUBLIC, "{role}"'))
        connection.execute(sa.text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
        connection.execute(
            sa.text(
                f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"'
            )
        )
        connection.execute(
            sa.text(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        )
    engine.dispose()


def _as_role(url: str, role: str) -> str:
    return sa.engine.make_url(url).set(username=role).render_as_string(False)


def _drop(postgres_url: str, database_url: str, role: str) -> None:
    base = sa.engine.make_url(postgres_url)
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        name = sa.engine.make_url(database_url).database
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    # the role's rights in the test's own database go when the fixture drops it; drop them here
    # so that the role can go now
    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        exists = connection.execute(
            sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}
        ).scalar()
    engine.dispose()
    if exists:
        _drop_role_everywhere(postgres_url, role)


def _drop_role_everywhere(postgres_url: str, role: str) -> None:
    base = sa.engine.make_url(postgres_url)
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        databases = (
            connection.execute(sa.text("SELECT datname FROM pg_database WHERE datallowconn"))
            .scalars()
            .all()
        )
    admin.dispose()
    for name in databases:
        engine = sa.create_engine(base.set(database=name), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sa.text(f'DROP OWNED BY "{role}"'))
        engine.dispose()
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP ROLE "{role}"'))
    admin.dispose()


# --------------------------------------------------------------------------- two processes

STARTER = """
import json, sys, time
from pathlib import Path

import alembic.command  # noqa: F401  (imported before the start, so both start together)

from driftloop.database import open_database
from driftloop.database.core import import_table_modules

ready, go, url = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
import_table_modules()
ready.touch()
while not go.exists():
    time.sleep(0.002)
database = open_database(url)
change = database.schema_upgrade
print(json.dumps({"changed": bool(change and change.changed),
                  "from": None if change is None else change.before.state}))
"""


def _start_together(url: str, directory: Path, count: int = 2) -> list[dict[str, Any]]:
    """``count`` processes that open ``url`` at the same instant; what each upgraded."""
    go = directory / "go"
    ready = [directory / f"ready-{i}" for i in range(count)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, str(ready[i]), str(go), url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(count)
    ]
    try:
        deadline = time.monotonic() + 120
        while not all(path.exists() for path in ready):
            assert all(p.poll() is None for p in processes), [p.communicate() for p in processes]
            assert time.monotonic() < deadline, "the processes did not get ready"
            time.sleep(0.01)
        go.touch()
        results = []
        for process in processes:
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture
def started(tmp_path: Path) -> Path:
    directory = tmp_path / "start"
    directory.mkdir()
    return directory


@pytest.mark.slow
def test_two_processes_start_on_a_new_store_at_once(empty_url: str, started: Path) -> None:
    results = _start_together(empty_url, started)
    assert sorted(r["changed"] for r in results) == [False, True]
    assert [r["from"] for r in results if r["changed"]] == ["empty"]
    database = Database(empty_url)
    try:
        with database.engine.connect() as connection:
            assert revision_rows(connection) == ([HEAD_REVISION], [SCHEMA_VERSION])
    finally:
        database.dispose()


@pytest.mark.slow
def test_two_processes_start_on_an_older_sqlite_store_at_once(
    tmp_path: Path, started: Path
) -> None:
    url = copy_fixture(tmp_path)
    results = _start_together(url, started)
    assert sorted(r["changed"] for r in results) == [False, True]
    assert [r["from"] for r in results if r["changed"]] == ["release-1"]
    database = Database(url)
    try:
        with database.engine.connect() as connection:
            assert revision_rows(connection) == ([HEAD_REVISION], [SCHEMA_VERSION])
            assert read_rows(connection) == fixture_rows()
    finally:
        database.dispose()
