"""The command line: help, version, init, config check, JSON output and clean errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from driftloop import __version__
from driftloop.cli import app

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("version", "init", "config"):
        assert command in result.output


def test_version_json() -> None:
    result = runner.invoke(app, ["version", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"version": __version__}


def test_init_then_check(tmp_path: Path) -> None:
    assert runner.invoke(app, ["init", str(tmp_path)]).exit_code == 0
    result = runner.invoke(app, ["config", "check", str(tmp_path / "driftloop.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["valid"] is True
    assert summary["models"] == ["review-classifier"]


def test_config_check_reports_error_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "driftloop.yaml"
    bad.write_text("serving: {port: 'x'}\n")
    result = runner.invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 1
    assert "serving.port" in result.output
    assert "Traceback" not in result.output


def test_init_twice_fails_cleanly(tmp_path: Path) -> None:
    runner.invoke(app, ["init", str(tmp_path)])
    result = runner.invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 1
    assert "already exists" in result.output


def test_version_option() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"driftloop {__version__}\n"
