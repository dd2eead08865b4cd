"""Project commands: version, init, config check."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from driftloop._version import __version__
from driftloop.cli.app import JsonOption, app, console, load, print_json, sub_app


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
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
    template: str = typer.Option(
        "project",
        "--template",
        "-t",
        help="project (a driftloop.yaml) or training-repo (GitHub Actions training repository).",
    ),
    model: str | None = typer.Option(None, "--model", help="training-repo: the model's name."),
    runs_on: str | None = typer.Option(
        None, "--runs-on", help="training-repo: runner labels, e.g. self-hosted,gpu."
    ),
    repo: str | None = typer.Option(None, "--repo", help="training-repo: OWNER/NAME on GitHub."),
    trainer: str | None = typer.Option(
        None, "--trainer", help="training-repo: sklearn (default) or transformers (GPU runner)."
    ),
) -> None:
    """Write a commented driftloop.yaml that works as is, or another template (--template)."""
    from driftloop.project import init_project
    from driftloop.scaffold import (
        GPU_RUNS_ON,
        PROJECT_TEMPLATE,
        TRAINING_REPO_TEMPLATE,
        WORKFLOW_PATH,
        TrainingRepoOptions,
        scaffold,
    )

    chosen = (model, runs_on, repo, trainer)
    if template == PROJECT_TEMPLATE and chosen == (None, None, None, None):
        written = init_project(directory, force=force)
        console.print(f"wrote [bold]{escape(str(written))}[/]")
        console.print(
            "next: [bold]driftloop train review-classifier[/], then [bold]driftloop up[/]"
        )
        return
    options = None
    if chosen != (None, None, None, None):
        defaults = TrainingRepoOptions()
        default_runs_on = GPU_RUNS_ON if trainer == "transformers" else defaults.runs_on
        options = TrainingRepoOptions(
            model=model or defaults.model,
            runs_on=TrainingRepoOptions.parse_runs_on(runs_on) if runs_on else default_runs_on,
            repo=repo or defaults.repo,
            trainer=trainer or defaults.trainer,
        )
    files = scaffold(template, directory, options=options, force=force)
    for path in files:
        console.print(f"wrote [bold]{escape(str(path))}[/]", highlight=False)
    if template == TRAINING_REPO_TEMPLATE:
        console.print(
            "next: set the secrets listed in "
            f"[bold]{escape(str(directory / WORKFLOW_PATH))}[/] "
            "and push the repository to GitHub",
            highlight=False,
        )


config_app = sub_app("config", "Inspect and validate driftloop.yaml.")


@config_app.command("check")
def config_check(
    file: Path | None = typer.Argument(None, help="Config file (default: found from here)."),
    as_json: bool = JsonOption,
) -> None:
    """Validate a config file and print what it configures (passwords and tokens masked)."""
    from driftloop.logs import mask_url

    config = load(file)
    summary = {
        "valid": True,
        "store": mask_url(config.store),
        "storage": mask_url(config.storage),
        "transport": mask_url(config.transport),
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
            console.print(f"  {key}: {value}", markup=False)


@config_app.command("keys")
def config_keys_command(as_json: bool = JsonOption) -> None:
    """List every configuration key path."""
    from driftloop.config import config_keys

    keys = config_keys()
    if as_json:
        print_json(keys)
    else:
        for key in keys:
            console.print(key, highlight=False)


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of driftloop.yaml (to point an editor at: docs/configuration.md)."""
    from driftloop.config import config_json_schema

    print_json(config_json_schema())
