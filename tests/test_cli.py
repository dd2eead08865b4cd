"""The command line: help, version, init, config check, JSON output and clean errors."""

from __future__ import annotations

import json
import subprocess
import sys
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


def test_help_and_version_import_only_what_they_use() -> None:
    """#21 part 2: the command modules import their libraries inside the commands."""
    code = (
        "import sys; sys.argv = ['driftloop', sys.argv[1]]\n"
        "from driftloop.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('sqlalchemy', 'numpy', 'fastapi', 'uvicorn', 'pandas', "
        "'sklearn', 'scipy', 'driftloop.config', 'driftloop.system')\n"
        "print('loaded:', ','.join(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    for argument in ("--help", "version", "--version"):
        result = subprocess.run(
            [sys.executable, "-c", code, argument],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert result.stderr.strip() == "loaded:", argument


def test_status_commands_import_no_server_and_no_training_library(tmp_path: Path) -> None:
    """#21 part 2: status, monitors status and models ls read the store; they import neither
    the server (FastAPI) nor what training and evaluation use (pandas, scikit-learn, scipy)."""
    runner.invoke(app, ["init", str(tmp_path)])
    code = (
        "import sys; sys.argv = ['driftloop', *sys.argv[1:]]\n"
        "from driftloop.cli import main\n"
        "code = 0\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code or 0\n"
        "heavy = ('fastapi', 'uvicorn', 'pandas', 'sklearn', 'scipy', 'matplotlib')\n"
        "print('loaded:', ','.join(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    for command in (["status"], ["monitors", "status", "--json"], ["models", "ls"]):
        result = subprocess.run(
            [sys.executable, "-c", code, *command],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert result.returncode == 0, (command, result.stderr)
        assert result.stderr.strip().splitlines()[-1] == "loaded:", (command, result.stderr)
