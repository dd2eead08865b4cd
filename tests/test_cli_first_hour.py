"""What a new user meets in the first hour (#21 parts 3 and 5): keys create -q, the report's
default folder, config schema, public_url following the port, a port in use, errors under
--json, and text that rich must not read as markup."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from driftloop.cli import app
from driftloop.cli.app import EXIT_PORT_IN_USE
from driftloop.cli.process import follow_port
from driftloop.config import parse_config
from driftloop.project import init_project

runner = CliRunner()


def test_keys_create_quiet_prints_the_key_alone(tmp_path: Path) -> None:
    config = init_project(tmp_path)
    result = runner.invoke(app, ["keys", "create", "-q", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"\S{20,}\n", result.stdout), result.stdout
    listed = json.loads(runner.invoke(app, ["keys", "ls", "--json", "-c", str(config)]).stdout)
    assert len(listed) == 1


def test_report_writes_to_a_default_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["report", "--json"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "driftloop-report" / "index.html").is_file()


def test_config_schema_accepts_the_init_file_and_refuses_an_unknown_key(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    project = yaml.safe_load(init_project(tmp_path).read_text())
    jsonschema.validate(project, schema)
    with pytest.raises(jsonschema.ValidationError, match="prot"):
        jsonschema.validate({**project, "serving": {"prot": 9000}}, schema)
    assert "base_dir" not in schema["properties"]


def test_public_url_follows_the_port_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DRIFTLOOP_PUBLIC_URL", raising=False)
    followed = follow_port(parse_config("", environ={}), "0.0.0.0", 9123)
    assert followed.public_url == "http://127.0.0.1:9123"
    kept = follow_port(
        parse_config("public_url: https://loop.example", environ={}), "0.0.0.0", 9123
    )
    assert kept.public_url == "https://loop.example"


def test_a_port_in_use_exits_4_with_a_message(tmp_path: Path) -> None:
    config = init_project(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for command in ("serve", "up"):
            result = runner.invoke(
                app, [command, "--host", "127.0.0.1", "--port", str(port), "-c", str(config)]
            )
            assert result.exit_code == EXIT_PORT_IN_USE, result.output
            assert f"port {port} on 127.0.0.1 is in use" in result.output


def test_errors_under_json_are_a_json_object_with_the_same_exit_code(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    plain = runner.invoke(app, ["config", "check", str(missing)])
    result = runner.invoke(app, ["config", "check", str(missing), "--json"])
    assert plain.exit_code == result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "ConfigError"
    assert error["exit_code"] == 1
    assert str(missing) in error["message"]
    usage = runner.invoke(app, ["config", "check", "--json", "--bogus"])
    assert usage.exit_code == 2
    assert json.loads(usage.stdout)["error"]["type"] == "UsageError"


def test_error_text_is_not_read_as_rich_markup(tmp_path: Path) -> None:
    odd = tmp_path / "[/x] [bold]driftloop[postgres].yaml"
    result = runner.invoke(app, ["config", "check", str(odd)])
    assert result.exit_code == 1
    assert f"{odd}: no such config file" in result.output.replace("\n", "")


def test_long_lines_are_not_wrapped_when_output_is_not_a_terminal(tmp_path: Path) -> None:
    long_path = tmp_path / ("a-long-folder-name-" + "x" * 150) / "driftloop.yaml"
    code = "import sys; from driftloop.cli import main; sys.argv[0] = 'driftloop'; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "config", "check", str(long_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr == f"error: {long_path}: no such config file\n"


def test_user_text_in_tables_and_lines_is_printed_as_given(tmp_path: Path) -> None:
    config = init_project(tmp_path)
    name = "ops [/x] [bold]team[/bold] driftloop[postgres]"
    created = runner.invoke(app, ["keys", "create", "--name", name, "-c", str(config)])
    assert created.exit_code == 0, created.output
    assert name in created.output.replace("\n", "")
    listed = runner.invoke(app, ["keys", "ls", "-c", str(config)])
    assert listed.exit_code == 0, listed.output
    assert "[/x]" in listed.output
    assert "driftloop[postgres]" in listed.output.replace("\n", "")
