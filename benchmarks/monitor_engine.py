"""Metric store ingest rate and monitor engine evaluation time, on SQLite (a temporary file).

    .venv/bin/python benchmarks/monitor_engine.py [--models 50] [--days 7] [--monitors 1000]

Prints a table: points/s for batch writes (with and without idempotency keys), then the time one
``MonitorEngine.evaluate()`` takes for ``--monitors`` threshold monitors with a ``--days`` window
over one point per minute per model (so the windows are answered from the rollups: whole hours
from the hour rollups, the ragged minutes at both ends from the minute rollups and the partial
minutes from raw points). The engine evaluates ``--clock-offset`` seconds before the last point,
so, as with a real clock, its windows are aligned to neither minutes nor hours.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from driftloop.config import Config
from driftloop.database import Database
from driftloop.metrics.points import MetricPoint
from driftloop.metrics.sql import SqlMetricStore
from driftloop.monitors.engine import MonitorEngine

NOW = 1_700_006_400.0  # a minute boundary
AGGREGATIONS = ("avg", "min", "max", "p50", "p90", "p99", "count", "sum")


def ingest(store: SqlMetricStore, total: int, batch: int, *, with_ids: bool) -> float:
    rng = np.random.default_rng(0)
    start = NOW - 3600.0
    elapsed = 0.0
    for offset in range(0, total, batch):
        values = rng.beta(8, 2, batch)
        points = [
            MetricPoint(
                "ingest_confidence" if not with_ids else "ingest_confidence_keyed",
                float(v),
                start + (offset + i) * 0.01,
                {"model": f"m{(offset + i) % 10}", "version": "1"},
                f"p{offset + i}" if with_ids else None,
            )
            for i, v in enumerate(values)
        ]
        began = time.perf_counter()
        store.write(points)
        elapsed += time.perf_counter() - began
    return total / elapsed


def backfill(store: SqlMetricStore, models: int, days: float, progress: Progress) -> float:
    minutes = int(days * 1440)
    rng = np.random.default_rng(1)
    task = progress.add_task(f"writing {days:g} days x {models} models", total=models)
    began = time.perf_counter()
    for model in range(models):
        values = rng.beta(8, 2, minutes)
        store.write(
            [
                MetricPoint(
                    "model_confidence",
                    float(v),
                    NOW - (minutes - i) * 60.0 + 7.0,
                    {"model": f"model-{model}"},
                )
                for i, v in enumerate(values)
            ]
        )
        progress.update(task, advance=1)
    return time.perf_counter() - began


def monitor_config(monitors: int, models: int, days: float, grouped: bool) -> Config:
    """Every monitor runs its own query: a filter on its own model, or (grouped) a window one
    minute shorter than the previous monitor's, so the engine's shared-query cache never hits."""
    specs = []
    for i in range(monitors):
        spec: dict[str, object] = {
            "name": f"monitor-{i}",
            "aggregation": AGGREGATIONS[i % len(AGGREGATIONS)],
            "window": days * 86400.0 - (60.0 * i if grouped else 0.0),
            "below": {"warning": 0.01, "critical": 0.001},
        }
        if not grouped:
            spec["filter"] = {"model": f"model-{i % models}"}
            spec["group_by"] = []
        specs.append(spec)
    return Config.model_validate({"monitors": specs})


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--monitors", type=int, default=1000)
    parser.add_argument(
        "--grouped-monitors",
        type=int,
        default=100,
        help="monitors grouped by model (each reads every model's rollups)",
    )
    parser.add_argument("--ingest-points", type=int, default=200_000)
    parser.add_argument(
        "--clock-offset",
        type=float,
        default=1234.5,
        help="evaluate this many seconds before the end of the data",
    )
    return parser.parse_args()


Record = Callable[[str, str], None]
"""Notes one measurement: its name and its result."""


def main() -> None:
    args = parse_args()
    console = Console()
    rows: list[tuple[str, str]] = []

    def record(name: str, value: str) -> None:
        rows.append((name, value))
        console.print(f"{name}: {value}", highlight=False)

    with tempfile.TemporaryDirectory() as directory:
        database = Database(f"sqlite:///{Path(directory) / 'bench.db'}")
        database.migrate()
        store = SqlMetricStore(database, raw_retention=30 * 86400.0, rollup_retention=90 * 86400.0)
        measure_writes(store, args, console, record)
        measure_evaluations(database, store, args, record)
        database.dispose()

    table = Table("measurement", "result", title="metric store and monitor engine (SQLite)")
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def measure_writes(
    store: SqlMetricStore, args: argparse.Namespace, console: Console, record: Record
) -> None:
    """Ingest in batches (with and without point ids), then the backfill of every model."""
    for batch in (1_000, 10_000):
        rate = ingest(store, args.ingest_points, batch, with_ids=False)
        record(f"ingest, batches of {batch:,}", f"{rate:,.0f} points/s")
    rate = ingest(store, args.ingest_points, 10_000, with_ids=True)
    record("ingest with point_id (idempotent), batches of 10,000", f"{rate:,.0f} points/s")

    with Progress(console=console, transient=True) as progress:
        seconds = backfill(store, args.models, args.days, progress)
    points = int(args.days * 1440) * args.models
    record(
        f"backfill {points:,} points ({args.models} models x {args.days:g} days, 1/min)",
        f"{seconds:.1f} s ({points / seconds:,.0f} points/s)",
    )


def measure_evaluations(
    database: Database, store: SqlMetricStore, args: argparse.Namespace, record: Record
) -> None:
    """Evaluate the ungrouped and the grouped monitors twice each (cold, then warm)."""
    evaluated_at = NOW - args.clock_offset
    for grouped, count in ((False, args.monitors), (True, args.grouped_monitors)):
        if count <= 0:
            continue
        config = monitor_config(count, args.models, args.days, grouped)
        engine = MonitorEngine(config, database, store, clock=lambda: evaluated_at)
        shape = (
            f"group_by model ({args.models} groups each)" if grouped else "one model each (filter)"
        )
        for run in ("first", "second"):
            began = time.perf_counter()
            engine.evaluate()
            seconds = time.perf_counter() - began
            record(
                f"evaluate {count:,} monitors, {args.days:g}-day window, {shape}, {run} run",
                f"{seconds:.2f} s",
            )


if __name__ == "__main__":
    main()
