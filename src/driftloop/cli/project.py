"""Project commands: version, init, config check."""

from __future__ import annotations

from pathlib import Path

import typer

from driftloop._version import __version__
from driftloop.cli.app import JsonOption, app, console, print_json, sub_app
from driftloop.config import config_keys, load_config
from driftloop.project import init_project


@app.command()
def version(as_json: bool = JsonOption) -> None:
    """Print the driftloop version."""
    if as_json:
        print_json({"version": __version__})
    else:
        console.print(f"driftloop {__version__}")


@app.command()
def init(
    directory: Path = typer.Argument(Path("."), help="Project directory to create or fill."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing driftloop.yaml."),
) -> None:
    """Write a commented driftloop.yaml with embedded defaults that works as is."""
    written = init_project(directory, force=force)
    console.print(f"wrote [bold]{written}[/]")
    console.print("next: [bold]driftloop train review-classifier[/], then [bold]driftloop up[/]")


config_app = sub_app("config", "Inspect and validate driftloop.yaml.")


@config_app.command("check")
def config_check(
    file: Path | None = typer.Argument(None, help="Config file (default: found from here)."),
    as_json: bool = JsonOption,
) -> None:
    """Validate a config file and print what it configures."""
    config = load_config(file)
    summary = {
        "valid": True,
        "store": config.store,
        "storage": config.storage,
        "transport": config.transport,
        "models": sorted(config.models),
        "monitors": [m.name for m in config.monitors],
        "notifiers": sorted(config.notifiers),
    }
    if as_json:
        print_json(summary)
        return
    console.print("[green]configuration is valid[/]")
    for key, value in summary.items():
        if key != "valid":
            console.print(f"  {key}: {value}")


@config_app.command("keys")
def config_keys_command(as_json: bool = JsonOption) -> None:
    """List every configuration key path."""
    keys = config_keys()
    if as_json:
        print_json(keys)
    else:
        for key in keys:
            console.print(key, highlight=False)
