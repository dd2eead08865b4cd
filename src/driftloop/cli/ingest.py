"""``driftloop ingest``: a Kafka consumer-group worker that drains insights into the store."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from types import FrameType

import typer

from driftloop.cli.app import (
    ConfigOption,
    JsonOption,
    LogFormatOption,
    LogLevelOption,
    app,
    console,
    err_console,
    load_for_service,
    print_json,
)


@app.command()
def ingest(
    until_idle: float | None = typer.Option(
        None,
        "--until-idle",
        min=0.1,
        help="Exit once no message has arrived for this many seconds (default: run until "
        "SIGTERM/SIGINT).",
    ),
    log_level: str | None = LogLevelOption,
    log_format: str | None = LogFormatOption,
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Consume insights from the kafka:// transport into the metric store (one group member)."""
    from driftloop.backends import require_module

    config = load_for_service(config_path, log_level, log_format)
    require_module("confluent_kafka", "kafka")
    from driftloop.insights.kafka import IngestStats, KafkaIngestWorker

    worker = KafkaIngestWorker.from_config(config)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = time.monotonic()
    if not as_json:
        console.print(
            f"ingesting {worker.topic} from {worker.bootstrap} as group "
            f"{worker.settings.group_id!r} into the metric store"
        )
    with err_console.status("waiting for partitions") as status:

        def progress(stats: IngestStats) -> None:
            status.update(
                f"partitions {list(stats.assigned_partitions)}: {stats.points} points "
                f"({stats.stored} new, {stats.duplicates} redelivered), "
                f"{stats.dead_letters} set aside"
            )

        stats = worker.run(stop, idle_exit=until_idle, on_batch=progress)
    if as_json:
        print_json({**stats.to_dict(), "seconds": round(time.monotonic() - started, 3)})
    else:
        console.print(
            f"ingested {stats.points} points from {stats.messages} messages: "
            f"{stats.stored} new, {stats.duplicates} redelivered, "
            f"{stats.dead_letters} set aside"
        )
