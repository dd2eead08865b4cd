"""The schema's revisions: 0001 is release 1's schema exactly, a store written by release 1
upgrades to the head with every row intact (SQLite and PostgreSQL), a new store migrated from
empty has the same structure as an upgraded one and as the tables the code declares, and 0002
lets an incident have several retrain jobs."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from database.release_1 import FIXTURE, fixture_rows, read_rows, revision_rows, structure
from driftloop.database import METADATA, Database
from driftloop.database.core import (
    HEAD_REVISION,
    REVISIONS,
    SCHEMA_VERSION,
    VERSION_TABLE,
    import_table_modules,
)
from driftloop.database.migrations import script_revisions
from driftloop.database.migrations.versions.r0001_release_1 import metadata as release_1
from driftloop.errors import ConfigError
from driftloop.pipeline.tables import retrain_jobs
from driftloop.serving.tables import feedback, feedback_texts


@pytest.fixture
def database(empty_url: str) -> Database:
    return Database(empty_url)


def test_revisions_list_the_scripts_in_order() -> None:
    assert script_revisions() == REVISIONS
    assert REVISIONS[-1] == HEAD_REVISION
    assert int(HEAD_REVISION) == SCHEMA_VERSION


def test_the_fixture_has_rows_in_every_release_1_table() -> None:
    with sqlite3.connect(f"file:{FIXTURE}?mode=ro", uri=True) as connection:
        tables = {
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        empty = [
            table
            for table in sorted(tables)
            if connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] == 0
        ]
        assert connection.execute("SELECT version FROM driftloop_schema").fetchall() == [(1,)]
    connection.close()
    assert tables == set(release_1.tables)
    assert empty == []


def test_revision_0001_is_release_1_schema_exactly(tmp_path: Path) -> None:
    """The frozen copy makes, statement for statement, the schema release 1 made."""
    made = tmp_path / "frozen.db"
    engine = sa.create_engine(f"sqlite:///{made}")
    with engine.begin() as connection:
        release_1.create_all(connection)
    engine.dispose()

    def schema(path: Path) -> set[tuple[str, str, str, str | None]]:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
            rows = connection.execute("SELECT type, name, tbl_name, sql FROM sqlite_master")
            found = {(kind, name, table, sql) for kind, name, table, sql in rows}
        connection.close()
        return found

    assert schema(made) == schema(FIXTURE)


def test_a_release_1_store_upgrades_with_every_row_intact(release_1_url: str) -> None:
    database = Database(release_1_url)
    try:
        with database.engine.connect() as connection:
            before = read_rows(connection)
        assert before == fixture_rows()  # the same content on both backends
        status = database.schema_status()
        assert (status.state, status.revision, status.schema_version) == ("release-1", None, 1)

        upgrade = database.upgrade()
        assert upgrade.changed
        assert (upgrade.before.state, upgrade.revision) == ("release-1", HEAD_REVISION)

        with database.engine.connect() as connection:
            after = read_rows(connection)
            assert revision_rows(connection) == ([HEAD_REVISION], [SCHEMA_VERSION])
            attempts = connection.execute(sa.select(retrain_jobs.c.attempt)).scalars().all()
        assert {table: len(rows) for table, rows in after.items()} == {
            table: len(rows) for table, rows in before.items()
        }
        assert after == before
        assert attempts == [1] * len(before["retrain_jobs"])
        assert database.schema_status().at_head
        assert not database.upgrade().changed  # a second run changes nothing
    finally:
        database.dispose()


def test_an_upgraded_store_is_built_like_a_new_one(release_1_url: str, tmp_path: Path) -> None:
    """Migrating from empty and upgrading release 1 end in the same structure, constraint names
    included; the tables the code declares (METADATA) match it too."""
    upgraded = Database(release_1_url)
    upgraded.upgrade()
    if upgraded.dialect == "sqlite":
        fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}"
        declared_url = f"sqlite:///{tmp_path / 'declared.db'}"
    else:
        fresh_url = _sibling_database(release_1_url, "fresh")
        declared_url = _sibling_database(release_1_url, "declared")
    fresh = Database(fresh_url)
    declared = Database(declared_url)
    try:
        fresh.upgrade()
        import_table_modules()
        with declared.engine.begin() as connection:
            METADATA.create_all(connection)
        with (
            upgraded.engine.connect() as a,
            fresh.engine.connect() as b,
            declared.engine.connect() as c,
        ):
            upgraded_structure = structure(a)
            assert upgraded_structure == structure(b)
            by_columns = structure(a, constraint_names=False)
            by_columns.pop(VERSION_TABLE)
            assert by_columns == structure(c, constraint_names=False)
        jobs = upgraded_structure["retrain_jobs"]
        assert [u for u in jobs["unique"] if u[1] == ("incident_id",)] == []
        assert ("ix_retrain_jobs_incident_id", ("incident_id",), False) in jobs["indexes"]
        assert jobs["columns"][-1][:3] == ("attempt", "INTEGER", False)
    finally:
        for database in (upgraded, fresh, declared):
            database.dispose()
        if upgraded.dialect == "postgresql":
            _drop_databases(release_1_url, [fresh_url, declared_url])


def _sibling_database(url: str, name: str) -> str:
    """A new database next to the one at ``url`` (dropped by :func:`_drop_databases`)."""
    base = sa.engine.make_url(url)
    database = f"{base.database}_{name}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    return base.set(database=database).render_as_string(hide_password=False)


def _drop_databases(url: str, urls: list[str]) -> None:
    admin = sa.create_engine(
        sa.engine.make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        for other in urls:
            name = sa.engine.make_url(other).database
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_after_0002_an_incident_may_have_several_jobs(database: Database) -> None:
    database.upgrade()
    row = {
        "model": "m",
        "incident_id": "incident-1",
        "state": "rejected",
        "trigger": "t",
        "reason": "",
        "attached_alerts": 1,
        "cancel_requested": False,
        "created_at": 1.0,
    }
    with database.engine.begin() as connection:
        connection.execute(retrain_jobs.insert(), {**row, "job_id": "a"})
        connection.execute(retrain_jobs.insert(), {**row, "job_id": "b", "attempt": 2})
        attempts = (
            connection.execute(
                sa.select(retrain_jobs.c.attempt)
                .where(retrain_jobs.c.incident_id == "incident-1")
                .order_by(retrain_jobs.c.job_id)
            )
            .scalars()
            .all()
        )
    assert attempts == [1, 2]
    # one active job per model still holds
    with pytest.raises(sa.exc.IntegrityError), database.engine.begin() as connection:
        connection.execute(
            retrain_jobs.insert(),
            [
                {**row, "job_id": "c", "active_model": "m"},
                {**row, "job_id": "d", "active_model": "m"},
            ],
        )
    database.dispose()


def test_migrate_from_empty_step_by_step_and_back(database: Database) -> None:
    try:
        assert database.schema_status().state == "empty"
        first = database.upgrade(to="0001")
        assert (first.before.state, first.revision) == ("empty", "0001")
        with database.engine.connect() as connection:
            assert revision_rows(connection) == (["0001"], [1])
        assert database.schema_status().state == "behind"
        assert database.upgrade().revision == HEAD_REVISION
        assert database.upgrade(to="0001").changed is False  # never backwards
        assert database.downgrade("0001").revision == "0001"
        with database.engine.connect() as connection:
            assert revision_rows(connection) == (["0001"], [1])
            assert "attempt" not in {
                c["name"] for c in sa.inspect(connection).get_columns("retrain_jobs")
            }
        assert database.downgrade("base").state == "empty"
        assert database.migrate() == SCHEMA_VERSION
        with pytest.raises(ConfigError, match="unknown schema revision"):
            database.upgrade(to="0099")
    finally:
        database.dispose()


def test_0004_keeps_the_latest_label_of_each_prediction(database: Database) -> None:
    """One label per prediction from 0004 on: a store with relabelled predictions keeps each
    one's last label (and text), and a second row for a prediction is refused after."""
    try:
        database.upgrade(to="0003")
        label = {"model": "m", "version": 1, "predicted_class": "a", "correct": True, "key_id": "k"}
        text = {"model": "m", "key_id": "k"}
        with database.engine.begin() as connection:
            connection.execute(
                feedback.insert(),
                [
                    {**label, "prediction_id": "p1", "label": "a", "received_at": 1.0},
                    {**label, "prediction_id": "p1", "label": "b", "received_at": 2.0},
                    {**label, "prediction_id": "p2", "label": "a", "received_at": 3.0},
                    {
                        **label,
                        "model": "other",
                        "prediction_id": "p1",
                        "label": "c",
                        "received_at": 4.0,
                    },
                ],
            )
            connection.execute(
                feedback_texts.insert(),
                [
                    {**text, "prediction_id": "p1", "text": "t", "label": "a", "received_at": 1.0},
                    {**text, "prediction_id": "p1", "text": "t", "label": "b", "received_at": 2.0},
                ],
            )
        database.upgrade()
        with database.engine.connect() as connection:
            kept = connection.execute(
                sa.select(feedback.c.model, feedback.c.prediction_id, feedback.c.label).order_by(
                    feedback.c.feedback_id
                )
            ).all()
            texts = connection.execute(sa.select(feedback_texts.c.label)).scalars().all()
            tables = set(sa.inspect(connection).get_table_names())
        assert [tuple(row) for row in kept] == [
            ("m", "p1", "b"),
            ("m", "p2", "a"),
            ("other", "p1", "c"),
        ]
        assert texts == ["b"]
        assert "serving_predictions" in tables
        with pytest.raises(sa.exc.IntegrityError), database.engine.begin() as connection:
            connection.execute(
                feedback.insert(),
                {**label, "prediction_id": "p2", "label": "z", "received_at": 5.0},
            )
        assert database.downgrade("0003").revision == "0003"
        with database.engine.connect() as connection:
            assert "serving_predictions" not in sa.inspect(connection).get_table_names()
    finally:
        database.dispose()
