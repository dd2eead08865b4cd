from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from driftloop.cli import app
from driftloop.config import config_keys
from notify.fake_services import FakeApiServer, Reply

DOCS = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"


def write_config(tmp_path: Path, server: FakeApiServer) -> Path:
    path = tmp_path / "driftloop.yaml"
    path.write_text(
        "store: sqlite:///state/driftloop.db\n"
        "public_url: https://driftloop.example.com\n"
        "models:\n  review-classifier: {}\n"
        "notifiers:\n"
        f"  hook: {{type: webhook, url: '{server.url}/hook'}}\n"
        f"  broken: {{type: webhook, url: '{server.url}/broken'}}\n"
    )
    return path


def test_notify_test_sends_through_the_notifier(tmp_path: Path, server: FakeApiServer) -> None:
    server.route("POST", "/hook", lambda _r: Reply(200, "ok"))
    config = write_config(tmp_path, server)
    result = CliRunner().invoke(app, ["notify", "test", "hook", "--json", "-c", str(config)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["status"] == "delivered"
    assert printed["ok"] is True
    assert printed["notifier"] == "hook"
    [request] = server.to("/hook")
    body = request.json()
    assert body["test"] is True
    assert body["model"] == "review-classifier"
    assert body["title"].startswith("[driftloop test]")

    listed = CliRunner().invoke(app, ["notify", "deliveries", "--json", "-c", str(config)])
    assert listed.exit_code == 0, listed.output
    [attempt] = json.loads(listed.stdout)
    assert (attempt["notifier"], attempt["status"], attempt["http_status"]) == (
        "hook",
        "delivered",
        200,
    )


def test_notify_test_exits_1_on_failure(tmp_path: Path, server: FakeApiServer) -> None:
    server.route("POST", "/broken", lambda _r: Reply(403, {"error": "forbidden"}))
    config = write_config(tmp_path, server)
    result = CliRunner().invoke(app, ["notify", "test", "broken", "-c", str(config)])
    assert result.exit_code == 1
    assert "failed" in result.stdout
    assert "forbidden" in result.stdout


def test_notify_test_unknown_name(tmp_path: Path, server: FakeApiServer) -> None:
    config = write_config(tmp_path, server)
    result = CliRunner().invoke(app, ["notify", "test", "nobody", "-c", str(config)])
    assert result.exit_code == 1
    assert "@nobody is not a notifier" in result.output


@pytest.mark.parametrize("command", ["notify test", "notify deliveries"])
def test_commands_are_documented(command: str) -> None:
    assert f"driftloop {command}" in DOCS.read_text(encoding="utf-8")


def test_notifier_and_hook_config_keys_are_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    keys = [k for k in config_keys() if k.startswith(("notifiers.", "hooks."))]
    assert keys
    for key in keys:
        leaf = key.rsplit(".", 1)[1]
        assert f"`{leaf}`" in text or f"`{key}`" in text, key
