"""``driftloop monitors ls|status|history`` on a project directory with a SQLite store."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from driftloop.cli import app
from driftloop.cli.app import console
from driftloop.config import load_config
from driftloop.database import open_database
from driftloop.metrics.points import MetricPoint
from driftloop.metrics.sql import SqlMetricStore

CONFIG = """
store: sqlite:///state/driftloop.db
monitors:
  - name: confidence
    metric: model_confidence
    window: 5m
    below: {warning: 0.8, critical: 0.7}
    message: "{{model}} is {{value}} {{#is_alert}}@log{{/is_alert}}"
"""


def test_ls_status_history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("DRIFTLOOP_")]:
        monkeypatch.delenv(name)  # DRIFTLOOP_* variables would override the config under test
    config_file = tmp_path / "driftloop.yaml"
    config_file.write_text(CONFIG)
    config = load_config(config_file, environ={})
    database = open_database(config.store, base_dir=config.base_dir)
    now = time.time()
    SqlMetricStore.from_config(database, config.metrics).write(
        [MetricPoint("model_confidence", 0.6, now - 5 * i, {"model": "m1"}) for i in range(1, 20)]
    )
    runner = CliRunner()

    listed = runner.invoke(app, ["monitors", "ls", "--config", str(config_file), "--json"])
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["name"], row["state"], row["below"]["warning"]["value"]) == (
        "confidence",
        None,
        0.8,
    )

    status = runner.invoke(app, ["monitors", "status", "-c", str(config_file), "--json"])
    assert status.exit_code == 0, status.output
    data = json.loads(status.stdout)
    assert data["monitors"][0]["state"] == "ALERT"
    assert data["events"][0]["message"] == "m1 is 0.6 @log"

    monkeypatch.setattr(console, "width", 200)  # wide enough that no cell is cut
    table = runner.invoke(app, ["monitors", "status", "-c", str(config_file)])
    assert table.exit_code == 0, table.output
    assert "ALERT" in table.stdout
    assert "model=m1" in table.stdout

    history = runner.invoke(app, ["monitors", "history", "-c", str(config_file), "--json"])
    [event] = json.loads(history.stdout)
    assert (event["previous"], event["state"]) == ("OK", "ALERT")

    incidents = runner.invoke(
        app, ["monitors", "history", "-c", str(config_file), "--incidents", "--json"]
    )
    [incident] = json.loads(incidents.stdout)
    assert incident["status"] == "open"
    assert incident["incident_id"] == event["incident_id"]

    timeline = runner.invoke(
        app, ["monitors", "history", "-c", str(config_file), "--incident", event["incident_id"]]
    )
    assert timeline.exit_code == 0
    assert "state_change" in timeline.stdout

    missing = runner.invoke(
        app, ["monitors", "history", "-c", str(config_file), "--incident", "inc-nope"]
    )
    assert missing.exit_code == 1
    assert "no incident 'inc-nope'" in missing.output
