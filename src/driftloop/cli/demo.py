"""``driftloop demo``: the closed loop on embedded defaults, in minutes."""

from __future__ import annotations

from pathlib import Path

import typer

from driftloop.cli.app import EXIT_LOOP_NOT_CLOSED, app, console


@app.command()
def demo(
    trainer: str = typer.Option(
        "sklearn",
        "--trainer",
        help="sklearn (seconds) or transformers (the packaged small BERT, minutes on a CPU).",
    ),
    speed: float = typer.Option(
        15.0, "--speed", help="Time compression: a 5-minute monitor window lasts 300/SPEED seconds."
    ),
    out: Path = typer.Option(Path("demo-out"), "--out", help="Where the report goes."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open the dashboard."),
    clients: int = typer.Option(4, "--clients", min=1, help="Concurrent traffic clients."),
    project: Path | None = typer.Option(
        None, "--project", help="Project directory (default: a fresh temporary one)."
    ),
    scenario: str = typer.Option(
        "text",
        "--scenario",
        help="text (the bundled reviews) or tabular (real image-segment records, a "
        "user-written predictor and trainer, feature drift monitors).",
    ),
    drift: str | None = typer.Option(
        None,
        "--drift",
        help="Subtopics of the bundled reviews v1 never sees and "
        "the traffic shifts to, comma-separated (default: "
        "the demo scenario's, imdb_user_review).",
    ),
) -> None:
    """Run the closed-loop demo: train, serve, drift, alert, retrain, deploy, recover."""
    from driftloop.demo.config import DemoOptions
    from driftloop.demo.runner import run_demo
    from driftloop.demo.scenario import DRIFTING_SUBTOPICS

    drift = ",".join(DRIFTING_SUBTOPICS) if drift is None else drift
    result = run_demo(
        DemoOptions(
            trainer=trainer,
            speed=speed,
            out=out,
            open_browser=not no_browser,
            clients=clients,
            project_dir=project,
            drifting=tuple(part.strip() for part in drift.split(",") if part.strip()),
            scenario=scenario,
        ),
        console,
    )
    if not result.closed:
        raise typer.Exit(EXIT_LOOP_NOT_CLOSED)
