"""``driftloop db current`` and ``driftloop db upgrade`` on a new, a release-1 (SQLite and
PostgreSQL), an up-to-date and a newer store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from database.release_1 import fixture_rows, read_rows, revision_rows
from driftloop.cli import app
from driftloop.database import Database
from driftloop.database.core import HEAD_REVISION, SCHEMA_VERSION, VERSION_TABLE

runner = CliRunner()


def _project(directory: Path, store: str) -> Path:
    config = directory / "driftloop.yaml"
    config.write_text(f"store: {store}\n")
    return config


def _db(config: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["db", *args, "--config", str(config)])
    return result.exit_code, result.output


def _flat(output: str) -> str:
    """Text output with its line breaks (rich wraps long lines) collapsed."""
    return " ".join(output.split())


def test_current_then_upgrade_a_new_store(tmp_path: Path) -> None:
    config = _project(tmp_path, "sqlite:///.driftloop/driftloop.db")
    code, output = _db(config, "current", "--json")
    assert code == 0, output
    current = json.loads(output)
    assert current["store"] == f"sqlite:///{tmp_path / '.driftloop/driftloop.db'}"
    assert (current["state"], current["revision"], current["head"], current["at_head"]) == (
        "empty",
        None,
        HEAD_REVISION,
        False,
    )

    code, output = _db(config, "upgrade")
    assert code == 0, output
    assert f"empty (no schema) → {HEAD_REVISION}" in _flat(output)

    code, output = _db(config, "current")
    assert code == 0, output
    assert f"revision: {HEAD_REVISION}" in _flat(output)
    assert "at head" in _flat(output)

    code, output = _db(config, "upgrade", "--json")
    assert code == 0, output
    assert json.loads(output) == {
        "store": current["store"],
        "from": HEAD_REVISION,
        "from_state": "current",
        "to": HEAD_REVISION,
        "changed": False,
    }
    code, output = _db(config, "upgrade")
    assert f"is already at {HEAD_REVISION} (head)" in _flat(output)


def test_upgrade_a_release_1_store(release_1_url: str, tmp_path: Path) -> None:
    config = _project(tmp_path, release_1_url)
    code, output = _db(config, "current")
    assert code == 0, output
    assert "release 1 (no revision)" in _flat(output)
    assert "run 'driftloop db upgrade'" in _flat(output)

    code, output = _db(config, "upgrade", "--json")
    assert code == 0, output
    upgrade = json.loads(output)
    assert (upgrade["from"], upgrade["from_state"], upgrade["to"], upgrade["changed"]) == (
        None,
        "release-1",
        HEAD_REVISION,
        True,
    )

    code, output = _db(config, "current", "--json")
    assert json.loads(output)["at_head"] is True
    database = Database(release_1_url)
    try:
        with database.engine.connect() as connection:
            assert revision_rows(connection) == ([HEAD_REVISION], [SCHEMA_VERSION])
            assert read_rows(connection) == fixture_rows()
    finally:
        database.dispose()


@pytest.mark.parametrize("command", ["upgrade", "current"])
def test_a_newer_store(command: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    database = Database(url)
    database.upgrade()
    with database.engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '0099'"))
    database.dispose()
    code, output = _db(_project(tmp_path, url), command)
    if command == "upgrade":
        assert code == 1
        assert "made by a newer driftloop; upgrade driftloop" in _flat(output)
        assert "Traceback" not in output
    else:
        assert code == 0, output
        assert "revision: 0099" in _flat(output)
        assert "newer than this driftloop" in _flat(output)
