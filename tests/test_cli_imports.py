"""What the command line imports (#21 part 2): a command imports only what it uses, so that
``driftloop --help`` and ``version`` start within 2x of a bare typer app, and ``status``,
``monitors status`` and ``models ls`` within 3x (``benchmarks/cli_startup.py`` measures it;
these tests guard the imports, not the time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from driftloop.cli import app
from driftloop.config import load_config, parse_config
from driftloop.config.loading import _FAST_LOADER
from driftloop.errors import ConfigError
from driftloop.system import DriftloopSystem

runner = CliRunner()

_REPORT_LOADED = (
    "import sys; heavy = sys.argv[1].split(','); sys.argv = ['driftloop', *sys.argv[2:]]\n"
    "from driftloop.cli import main\n"
    "code = 0\n"
    "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code or 0\n"
    "print('loaded:', ','.join(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    "sys.exit(code)\n"
)
"""Runs ``driftloop ARGS...`` in this interpreter, then prints which of the comma-separated
modules in its first argument it imported."""

SERVER = ("fastapi", "starlette", "uvicorn", "pandas", "sklearn", "scipy", "matplotlib")
STORE_COMMAND_NEEDS_NOT = (
    *SERVER,
    "sqlalchemy.dialects.postgresql",  # a SQLite store: the PostgreSQL dialect is imported to write
    "alembic",  # a store at the head revision: one query, no migration machinery
    "fsspec",  # the registry's storage opens its filesystem when it is first read or written
    "driftloop.insights",  # the SDK, imported by 'import driftloop' until #21's fourth pass
)
READING_EVALUATES_NOTHING = (
    "rich.progress",  # the progress bar is imported by the commands that show one
    # stored states, events and incidents are read without the monitor engine, which imports
    # numpy and the metric store to evaluate
    "numpy",
    "driftloop.monitors.engine",
    "driftloop.metrics.sql",
)
EVALUATING_NEEDS_NOT = (
    # 'monitors status' builds the monitor engine and its notifications; the retrain pipeline
    # (its deploy hook's httpx), the app's stores, the control plane and the Prometheus
    # collectors are built on first use, by 'up', 'worker' and 'retrain'
    "driftloop.pipeline.runner",
    "driftloop.pipeline.worker",
    "driftloop.pipeline.retry",
    "driftloop.serving.feedback",
    "driftloop.serving.keys",
    "driftloop.leadership",
    "driftloop.control_metrics",
    "prometheus_client",
    "httpx",
)


def _loaded(modules: tuple[str, ...], args: list[str], cwd: Path | None = None) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _REPORT_LOADED, ",".join(modules), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    assert result.returncode == 0, (args, result.stderr)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("loaded:"), (args, result.stderr)
    return [name for name in last.removeprefix("loaded:").strip().split(",") if name]


def test_help_and_version_import_only_what_they_use() -> None:
    """The command modules import their libraries inside the commands."""
    heavy = (
        *("sqlalchemy", "numpy", "yaml", "rich.progress", *SERVER),
        *("driftloop.config", "driftloop.system", "driftloop.insights"),
    )
    for argument in ("--help", "version", "--version"):
        assert _loaded(heavy, [argument]) == [], argument


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project made by ``driftloop init``, its store created (at the head revision)."""
    folder = tmp_path_factory.mktemp("project")
    assert runner.invoke(app, ["init", str(folder)]).exit_code == 0
    created = runner.invoke(app, ["status", "--config", str(folder / "driftloop.yaml")])
    assert created.exit_code == 0, created.output
    return folder


@pytest.mark.parametrize(
    ("command", "not_needed"),
    [
        (["status"], (*STORE_COMMAND_NEEDS_NOT, *READING_EVALUATES_NOTHING)),
        # no arrays in a version's row, no progress bar
        (["models", "ls"], (*STORE_COMMAND_NEEDS_NOT, "numpy", "rich.progress")),
        (["monitors", "status", "--json"], (*STORE_COMMAND_NEEDS_NOT, *EVALUATING_NEEDS_NOT)),
        # off a terminal the transient progress bar would draw nothing: it is not imported
        (
            ["monitors", "status"],
            (*STORE_COMMAND_NEEDS_NOT, *EVALUATING_NEEDS_NOT, "rich.progress"),
        ),
        (["monitors", "ls"], (*STORE_COMMAND_NEEDS_NOT, *READING_EVALUATES_NOTHING)),
        (["monitors", "history"], (*STORE_COMMAND_NEEDS_NOT, *READING_EVALUATES_NOTHING)),
    ],
    ids=[
        *("status", "models-ls", "monitors-status-json", "monitors-status"),
        *("monitors-ls", "monitors-history"),
    ],
)
def test_store_commands_import_neither_the_server_nor_what_they_do_not_read(
    project: Path, command: list[str], not_needed: tuple[str, ...]
) -> None:
    assert _loaded(not_needed, command, cwd=project) == [], command


def test_the_config_is_read_by_libyaml_and_a_yaml_error_still_shows_the_line() -> None:
    """libyaml parses ``driftloop.yaml`` ten times faster than PyYAML's Python loader; a broken
    file is reported by the Python loader, whose message quotes the line with a caret."""
    assert yaml.__with_libyaml__  # PyYAML's wheels carry libyaml
    assert _FAST_LOADER.__name__ == "CSafeLoader"
    with pytest.raises(ConfigError, match="not valid YAML") as caught:
        parse_config("models:\n  review: {trainer: [sklearn\n")
    assert "^" in caught.value.message
    assert "{trainer: [sklearn" in caught.value.message


def test_the_system_builds_the_retrain_pipeline_and_the_app_stores_on_first_use(
    project: Path,
) -> None:
    """``DriftloopSystem(config).engine`` (what ``monitors status`` evaluates with) builds the
    monitor engine and its notification router; the rest is built when first used."""
    built_on_use = [
        *("datasets", "transport", "insights", "api_keys", "feedback"),
        *("pipeline", "retries", "worker"),
    ]
    system = DriftloopSystem(load_config(project / "driftloop.yaml"))
    assert system.engine is system.monitor_engine
    assert [name for name in built_on_use if name in vars(system)] == []
    assert system.worker.pipeline is system.pipeline  # the worker runs the system's pipeline
    assert system.pipeline.datasets is system.datasets
    system.stop_background()  # nothing started: the insights client is not built to be closed
    assert "insights" not in vars(system)
