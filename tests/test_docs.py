"""Every CLI command and every config key is documented in README.md or docs/."""

from __future__ import annotations

from pathlib import Path

import click
import typer

from driftloop.cli import app
from driftloop.config import config_keys

ROOT = Path(__file__).resolve().parents[1]


def documentation() -> str:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return "\n".join(page.read_text() for page in pages)


def cli_commands() -> list[str]:
    found: list[str] = []

    def walk(command: click.Command, prefix: str) -> None:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, f"{prefix} {name}")
        else:
            found.append(prefix)

    walk(typer.main.get_command(app), "driftloop")
    return sorted(found)


def test_every_cli_command_is_documented() -> None:
    docs = documentation()
    missing = [command for command in cli_commands() if f"`{command}" not in docs]
    assert not missing, f"undocumented commands: {missing}"


def test_every_command_has_one_line_help() -> None:
    root = typer.main.get_command(app)
    assert isinstance(root, click.Group)
    ctx = click.Context(root)
    for name in root.list_commands(ctx):
        command = root.get_command(ctx, name)
        assert command is not None and command.get_short_help_str().strip(), name


def test_every_config_key_is_documented() -> None:
    docs = documentation()
    missing = [key for key in config_keys() if f"`{key}`" not in docs]
    assert not missing, f"undocumented config keys: {missing}"
