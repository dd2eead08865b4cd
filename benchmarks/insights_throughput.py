"""Insights throughput and end-to-end lag: the embedded path vs Kafka into PostgreSQL.

The same workload (``--points`` reports of ``model_confidence`` over 8 models) goes through

* ``local → SQLite``: the SDK publishing in-process into the SQLite metric store (the default);
* ``local → PostgreSQL``: the same into PostgreSQL (to separate the store's cost from Kafka's);
* ``kafka → PostgreSQL``: the SDK producing to a real Apache Kafka topic (``--partitions``),
  drained by ``--ingest-workers`` ``driftloop ingest`` processes (one consumer group) into
  PostgreSQL.

Each path runs twice: flat out (throughput: points stored per second, from the first report to
the last point in the store) and paced at ``--rate`` points/s (lag under a steady load: for each
point, the time from ``report()`` to the moment the store holds that many points, sampled every
20 ms). Every run checks that the store ends with exactly the points reported.

Needs the services of scripts/services/ (started if not running)::

    .venv/bin/python benchmarks/insights_throughput.py [--points 100000] [--paced-points N]
        [--rate 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from numpy.typing import NDArray

from driftloop.config import Config, InsightsConfig, KafkaConfig
from driftloop.database import Database, open_database
from driftloop.insights import InsightsClient
from driftloop.insights.kafka import ensure_topic
from driftloop.metrics.tables import metric_points

REPO = Path(__file__).resolve().parents[1]
MODELS = [f"model-{i}" for i in range(8)]
SAMPLE_EVERY = 0.02
FLAT_OUT_SAMPLE_EVERY = 0.1
"""Flat out, the store's point count is polled less often: ``SELECT count(*)`` over a table
growing to hundreds of thousands of rows would otherwise take a good share of the CPU it
measures (the lag of a flat-out run is backlog, not latency, anyway)."""
EMBEDDED_GOAL = 100_000
"""points/s the issue asks of the embedded path (local → SQLite), flat out."""


@dataclass(frozen=True)
class Result:
    path: str
    mode: str
    points: int
    seconds: float
    points_per_second: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float


def service_url(name: str) -> str:
    script = REPO / "scripts" / "services" / f"{name}.sh"
    return subprocess.run(
        [str(script), "start"], capture_output=True, text=True, check=True
    ).stdout.strip()


@contextmanager
def fresh_postgres(server_url: str) -> Iterator[str]:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(
        sa.engine.make_url(server_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(server_url).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def counter(database: Database) -> Callable[[], int]:
    query = sa.select(sa.func.count()).select_from(metric_points)

    def count() -> int:
        with database.engine.connect() as connection:
            return int(connection.execute(query).scalar() or 0)

    return count


def run(
    path: str, client: InsightsClient, count: Callable[[], int], points: int, rate: float | None
) -> Result:
    """Report ``points`` (flat out, or paced at ``rate``/s) and wait until all are stored."""
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    every = SAMPLE_EVERY if rate else FLAT_OUT_SAMPLE_EVERY

    def sample() -> None:
        while not done.is_set():
            samples.append((time.perf_counter(), count()))
            time.sleep(every)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    reported_at = report_points(client, points, rate, started)
    client.flush()
    deadline = time.perf_counter() + 600
    while count() < points:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{path}: only {count()} of {points} points stored after 600 s")
        time.sleep(SAMPLE_EVERY / 2)
    finished = time.perf_counter()
    done.set()
    sampler.join()
    samples.append((finished, count()))
    stored = samples[-1][1]
    if stored != points:
        raise RuntimeError(f"{path}: the store holds {stored} points, {points} were reported")
    lags = storage_lags_ms(samples, reported_at)
    seconds = finished - started
    return Result(
        path,
        f"{rate:g}/s" if rate else "flat out",
        points,
        seconds,
        points / seconds,
        float(np.percentile(lags, 50)),
        float(np.percentile(lags, 99)),
        float(lags.max()),
    )


def report_points(
    client: InsightsClient, points: int, rate: float | None, started: float
) -> NDArray[np.float64]:
    """Report ``points`` confidences over the models (flat out, or in 10 ms chunks paced at
    ``rate``/s from ``started``); returns when each was reported (``perf_counter``)."""
    reported_at = np.empty(points)
    values = np.random.default_rng(0).uniform(0.3, 1.0, points).tolist()
    tags = [{"model": model, "version": "1"} for model in MODELS]
    chunk = max(1, int((rate or 0) * 0.01)) if rate else points
    report = client.report
    for begin in range(0, points, chunk):
        if rate:
            target = started + begin / rate
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        now = time.perf_counter()
        wall = time.time()
        for i in range(begin, min(begin + chunk, points)):
            report({"model_confidence": values[i]}, tags[i % len(tags)], timestamp=wall)
        reported_at[begin : begin + chunk] = now
    return reported_at


def storage_lags_ms(
    samples: list[tuple[float, int]], reported_at: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Per point, ms from its report to the first sample of the stored count that holds it."""
    points = reported_at.size
    times = np.array([t for t, _ in samples])
    counts = np.array([c for _, c in samples])
    # the first sample at which the store held i+1 points
    index = np.searchsorted(counts, np.arange(1, points + 1), side="left")
    lags: NDArray[np.float64] = (times[np.minimum(index, len(times) - 1)] - reported_at) * 1000
    return lags


def make_config(directory: Path, store: str, transport: str, group: str) -> Config:
    return Config(
        store=store,
        transport=transport,
        base_dir=directory,
        insights=InsightsConfig(outbox=f"outbox-{uuid.uuid4().hex[:8]}", queue_size=1_000_000),
        kafka=KafkaConfig(
            group_id=group, session_timeout=6.0, heartbeat_interval=1.0, poll_timeout=0.1
        ),
    )


def local_path(name: str, directory: Path, store: str, points: int, rate: float | None) -> Result:
    config = make_config(directory, store, "local://", "unused")
    database = open_database(store, base_dir=directory)
    client = InsightsClient.from_config(config)
    try:
        return run(name, client, counter(database), points, rate)
    finally:
        client.close()


def wait_for_group(bootstrap: str, group: str, members: int, timeout: float = 120) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            description = admin.describe_consumer_groups([group])[group].result(timeout=10)
        except KafkaException as exc:  # a broker just started has no group coordinator yet
            if not exc.args[0].retriable():
                raise
            time.sleep(0.5)
            continue
        assigned = sum(
            len(m.assignment.topic_partitions)
            for m in description.members
            if m.assignment is not None
        )
        if (
            len(description.members) == members
            and assigned > 0
            and str(description.state).endswith("STABLE")
        ):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the ingest group {group} did not reach {members} members")


def kafka_path(
    directory: Path,
    bootstrap: str,
    store: str,
    partitions: int,
    workers: int,
    points: int,
    rate: float | None,
) -> Result:
    topic = f"bench-{uuid.uuid4().hex[:10]}"
    group = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic, partitions)
    config = make_config(directory, store, f"kafka://{bootstrap}/{topic}", group)
    config_file = directory / f"{group}.yaml"
    config_file.write_text(json.dumps(config.model_dump(mode="json")))
    database = open_database(store, base_dir=directory)
    driftloop = str(Path(sys.executable).parent / "driftloop")
    logs = [(directory / f"{group}-{i}.log").open("wb") for i in range(workers)]
    ingest = [
        subprocess.Popen(
            [driftloop, "ingest", "--config", str(config_file), "--json"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        for log in logs
    ]
    try:
        wait_for_group(bootstrap, group, workers)
        client = InsightsClient.from_config(config)
        try:
            return run("kafka → PostgreSQL", client, counter(database), points, rate)
        finally:
            client.close()
    finally:
        for process in ingest:
            process.terminate()
        for process in ingest:
            process.wait(timeout=60)
        for log in logs:
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument(
        "--paced-points",
        type=int,
        default=None,
        help="points of the paced runs (default: --points)",
    )
    parser.add_argument(
        "--rate", type=float, default=2_000.0, help="points/s of the paced runs (0: skip them)"
    )
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--ingest-workers", type=int, default=2)
    args = parser.parse_args()
    flat_out_points: int = args.points
    paced_points: int = args.paced_points or args.points
    modes: list[float | None] = [None] + ([args.rate] if args.rate > 0 else [])

    postgres = service_url("postgres")
    bootstrap = service_url("kafka").removeprefix("kafka://")
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-") as temporary:
        directory = Path(temporary)
        for rate in modes:
            points = flat_out_points if rate is None else paced_points
            sqlite = f"sqlite:///{directory / f'embedded-{uuid.uuid4().hex[:6]}.db'}"
            results.append(local_path("local → SQLite", directory, sqlite, points, rate))
            with fresh_postgres(postgres) as store:
                results.append(local_path("local → PostgreSQL", directory, store, points, rate))
            with fresh_postgres(postgres) as store:
                results.append(
                    kafka_path(
                        directory,
                        bootstrap,
                        store,
                        args.partitions,
                        args.ingest_workers,
                        points,
                        rate,
                    )
                )

    print_results(results, flat_out_points, paced_points, args)


def print_results(
    results: list[Result], flat_out_points: int, paced_points: int, args: argparse.Namespace
) -> None:
    """The markdown table of every run, and the embedded-ingestion goal."""
    print(
        f"{flat_out_points} points flat out, {paced_points} paced, 8 models; kafka: "
        f"{args.partitions} partitions, "
        f"{args.ingest_workers} ingest workers\n"
    )
    print("| path | load | seconds | points/s | lag p50 | lag p99 | lag max |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.path} | {r.mode} | {r.seconds:.2f} | {r.points_per_second:,.0f} | "
            f"{r.lag_p50_ms:,.0f} ms | {r.lag_p99_ms:,.0f} ms | {r.lag_max_ms:,.0f} ms |"
        )
    embedded = next(r for r in results if r.path == "local → SQLite" and r.mode == "flat out")
    met = "met" if embedded.points_per_second >= EMBEDDED_GOAL else "NOT met"
    print(
        f"\ngoal (issue 11): embedded ingestion >= {EMBEDDED_GOAL:,} points/s: {met} "
        f"({embedded.points_per_second:,.0f})"
    )


if __name__ == "__main__":
    main()
