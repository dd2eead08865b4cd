"""``driftloop train MODEL``: train, evaluate and register a version, with a progress bar."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from driftloop.cli.app import ConfigOption, JsonOption, app, console, err_console, load, print_json

if TYPE_CHECKING:
    from driftloop.registry.versions import ModelVersion


@app.command()
def train(
    model: str = typer.Argument(..., help="Model name under 'models:' in driftloop.yaml."),
    data: str | None = typer.Option(
        None, "--data", help="Snapshot id to train on (default: the dataset's newest)."
    ),
    trigger: str = typer.Option("manual", "--trigger", help="manual, incident:<id>, ci:<run>."),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Train a model on its newest data snapshot, evaluate it and register a version."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from driftloop.trainers.training import train_model

    config = load(config_path)
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=as_json,
    ) as progress:
        task = progress.add_task(f"training {model}", total=1.0)

        def report(stage: str, fraction: float) -> None:
            progress.update(
                task, description=f"{model}: {stage}", completed=max(0.0, min(1.0, fraction))
            )

        version = train_model(config, model, snapshot_id=data, trigger=trigger, progress=report)
    seconds = time.perf_counter() - started
    if as_json:
        print_json({**version.to_dict(), "seconds": round(seconds, 3)})
        return
    console.print(summary_table(version, seconds))


def summary_table(version: ModelVersion, seconds: float) -> Table:
    table = Table("", "", title=f"{version.name} v{version.version}", show_header=False)
    from driftloop.predictors import RegressionEvaluation

    evaluation = version.evaluation
    rows: list[tuple[str, str]] = [
        ("version", str(version.version)),
        ("hash", version.content_hash[:16]),
        ("trainer", version.trainer),
        ("data snapshot", str(version.snapshot_id)),
    ]
    if isinstance(evaluation, RegressionEvaluation):
        rows += [
            ("held-out rows", str(evaluation.n)),
            ("MAE", f"{evaluation.mae:.3f}"),
            ("RMSE", f"{evaluation.rmse:.3f}"),
            ("R²", f"{evaluation.r2:.3f}"),
        ]
    elif evaluation is not None:
        rows += [
            ("held-out rows", str(evaluation.n)),
            ("accuracy", f"{evaluation.accuracy:.3f}"),
            ("macro-F1", f"{evaluation.macro_f1:.3f}"),
            ("ECE before calibration", f"{evaluation.ece_before_calibration:.3f}"),
            ("ECE after calibration", f"{evaluation.ece:.3f}"),
            ("mean confidence", f"{evaluation.mean_confidence:.3f}"),
        ]
    temperature = version.params.get("temperature")
    if isinstance(temperature, int | float):
        rows.append(("temperature", f"{temperature:.3f}"))
    rows += [
        ("parent version", str(version.parent_version or "-")),
        ("deployed", "production" if version.deployed_at else "not yet (driftloop models promote)"),
        ("time", f"{seconds:.1f} s"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    return table
