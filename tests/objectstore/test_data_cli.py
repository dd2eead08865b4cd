"""``driftloop data push|ls``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from driftloop.cli import app
from driftloop.project import init_project

runner = CliRunner()


def flat(output: str) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(output.split())


def test_push_and_list(tmp_path: Path) -> None:
    config = init_project(tmp_path / "project")
    source = tmp_path / "rows.csv"
    pd.DataFrame({"text": ["good", "bad"], "label": ["p", "n"]}).to_csv(source, index=False)

    pushed = runner.invoke(
        app, ["data", "push", str(source), "--dataset", "mine", "-c", str(config), "--json"]
    )
    assert pushed.exit_code == 0, pushed.output
    snapshot = json.loads(pushed.stdout)
    assert snapshot["dataset"] == "mine"
    assert snapshot["row_count"] == 2

    plain = runner.invoke(app, ["data", "push", str(source), "-d", "mine", "-c", str(config)])
    assert plain.exit_code == 0
    assert "pushed mine snapshot" in plain.stdout

    listed = runner.invoke(app, ["data", "ls", "-c", str(config), "--json"])
    assert listed.exit_code == 0
    (entry,) = json.loads(listed.stdout)
    assert entry["dataset"] == "mine"
    assert entry["snapshots"] == 2

    snapshots = runner.invoke(app, ["data", "ls", "--dataset", "mine", "-c", str(config), "--json"])
    ids = [s["snapshot_id"] for s in json.loads(snapshots.stdout)]
    assert ids[0] == snapshot["snapshot_id"]
    assert len(ids) == 2

    table = runner.invoke(app, ["data", "ls", "-c", str(config)])
    assert table.exit_code == 0
    assert "mine" in table.stdout


def test_empty_file_is_a_clean_error(tmp_path: Path) -> None:
    config = init_project(tmp_path / "project")
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    result = runner.invoke(app, ["data", "push", str(empty), "--dataset", "d", "-c", str(config)])
    assert result.exit_code == 1
    assert "empty dataset" in flat(result.output)
    listed = runner.invoke(app, ["data", "ls", "-c", str(config), "--json"])
    assert json.loads(listed.stdout) == []
