"""``driftloop report``: the static HTML report with PNG plots and the JSON of events."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from driftloop.cli.app import ConfigOption, JsonOption, app, console, load, print_json
from driftloop.timestamps import iso_utc


@app.command()
def report(
    out: Path = typer.Option(
        Path("driftloop-report"), "--out", "-o", help="Directory to write the report into."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="Only this model."),
    since: str | None = typer.Option(
        None, "--since", help="Start: a duration back from now (2h, 7d) or an ISO 8601 time."
    ),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Write a static HTML report with PNG plots and events.json, to attach to a ticket."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from driftloop.dashboard import StoreDashboardData, generate_report, parse_since

    config = load(config_path)
    data = StoreDashboardData.from_config(config)
    start = None if since is None else parse_since(since, now=data.now())
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=as_json,
    ) as progress:
        task = progress.add_task("report", total=1.0)

        def advance(what: str, fraction: float) -> None:
            progress.update(task, description=what, completed=fraction)

        paths = generate_report(data, out, model=model, since=start, progress=advance)
    if as_json:
        print_json(
            {
                "index_html": str(paths.index_html),
                "events_json": str(paths.events_json),
                "images": [str(p) for p in paths.images],
                "models": paths.models,
                "start": iso_utc(paths.start),
                "end": iso_utc(paths.end),
                "events": paths.events,
            }
        )
        return
    console.print(
        f"wrote [bold]{escape(str(paths.index_html))}[/] ({len(paths.images)} plots, "
        f"{paths.events} events in {paths.events_json.name})"
    )
