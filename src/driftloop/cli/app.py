"""The typer application and what every command shares: the config option, JSON output and
the mapping of :class:`DriftloopError` to a one-line message and exit code 1."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from driftloop.config import Config, load_config
from driftloop.errors import DriftloopError

console = Console()
err_console = Console(stderr=True)


class DriftloopGroup(TyperGroup):
    """Turns a :class:`DriftloopError` from any command into a clean message and exit code 1."""

    def invoke(self, ctx: Any) -> Any:  # click.Context, vendored by typer >= 0.2x
        try:
            return super().invoke(ctx)
        except DriftloopError as exc:
            err_console.print(f"[bold red]error:[/] {exc.message}", highlight=False)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=DriftloopGroup,
    help="driftloop keeps a deployed model from drifting: "
    "serve → report insights → monitor → notify → retrain → gate → deploy → verify.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOption = typer.Option(
    None, "--config", "-c", help="Path to driftloop.yaml (default: found from the current dir)."
)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.")


def sub_app(name: str, help: str) -> typer.Typer:
    """A command group (``driftloop models ...``) registered on the main app."""
    group = typer.Typer(help=help, no_args_is_help=True, add_completion=False)
    app.add_typer(group, name=name, help=help)
    return group


def load(config_path: Path | None) -> Config:
    return load_config(config_path)


def print_json(data: Any) -> None:
    """JSON on stdout, nothing else, so it pipes into ``jq``."""
    sys.stdout.write(json.dumps(data, indent=2, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()
