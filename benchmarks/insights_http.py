"""``POST /v1/insights`` ingestion (#19 part 9): points/s from an HTTP client through a driftloop
server into the store, side by side with the in-process path (``report`` in the server's own
process, what ``benchmarks/insights_throughput.py`` measures), in one run:

* ``in-process → SQLite`` and ``HTTP → SQLite``: the embedded defaults (``transport: local://``);
* ``in-process → Kafka → PostgreSQL`` and ``HTTP → Kafka → PostgreSQL``: ``transport: kafka://``
  with ``--ingest-workers`` ``driftloop ingest`` processes draining into PostgreSQL.

The HTTP server is ``driftloop serve`` in its own process; the client (this process) posts
``--batch`` points per request from ``--concurrency`` threads, the bodies encoded before the
clock starts, with an ``insights`` key. Each figure runs from the first report to the moment the
store holds every point (checked exactly: none lost, none doubled).

    .venv/bin/python benchmarks/insights_http.py [--points 50000] [--batch 1000]
        [--concurrency 4] [--ingest-workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from driftloop.config import Config
from driftloop.database import open_database
from driftloop.insights.kafka import ensure_topic
from driftloop.serving import ApiKeyStore, Scope
from insights_throughput import (
    MODELS,
    counter,
    fresh_postgres,
    kafka_path,
    local_path,
    make_config,
    service_url,
    wait_for_group,
)

DRIFTLOOP = str(Path(sys.executable).parent / "driftloop")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bodies(points: int, batch: int) -> list[bytes]:
    now = time.time()
    return [
        json.dumps(
            {
                "points": [
                    {
                        "name": "model_confidence",
                        "value": 0.3 + (i % 70) / 100,
                        "timestamp": now,
                        "tags": {"model": MODELS[i % len(MODELS)], "version": "1"},
                    }
                    for i in range(start, min(start + batch, points))
                ]
            }
        ).encode()
        for start in range(0, points, batch)
    ]


@contextmanager
def server(directory: Path, config: Config) -> Iterator[tuple[str, str]]:
    """``driftloop serve`` on ``config`` in its own process; yields its URL and an insights
    key."""
    port = free_port()
    config = config.model_copy(update={"serving": config.serving.model_copy(update={"port": port})})
    path = directory / f"serve-{uuid.uuid4().hex[:8]}.yaml"
    path.write_text(json.dumps(config.model_dump(mode="json")))
    database = open_database(config.store, base_dir=directory)
    key = ApiKeyStore(database).create(Scope.INSIGHTS, name="bench").key
    log = (directory / f"{path.stem}.log").open("wb")
    process = subprocess.Popen(
        [DRIFTLOOP, "serve", "--config", str(path), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=directory,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"driftloop serve did not start: see {log.name}")
            time.sleep(0.2)
        yield url, key
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


def post_all(
    url: str,
    key: str,
    payloads: list[bytes],
    points: int,
    store: str,
    directory: Path,
    concurrency: int,
    name: str,
) -> float:
    """Post every payload; points/s until the store holds all ``points``."""
    count = counter(open_database(store, base_dir=directory))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:

        def post(body: bytes) -> None:
            answer = client.post("/v1/insights", content=body)
            if answer.status_code != 202:
                raise RuntimeError(f"{name}: {answer.status_code} {answer.text[:200]}")

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(post, payloads))
        deadline = time.perf_counter() + 600
        while (stored := count()) < points:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{name}: only {stored} of {points} points after 600 s")
            time.sleep(0.02)
        seconds = time.perf_counter() - started
    time.sleep(1.0)
    if (stored := count()) != points:
        raise RuntimeError(f"{name}: the store holds {stored} points, {points} were sent")
    return points / seconds


def http_local(directory: Path, points: int, payloads: list[bytes], concurrency: int) -> float:
    store = f"sqlite:///{directory / f'http-{uuid.uuid4().hex[:6]}.db'}"
    config = make_config(directory, store, "local://", "unused")
    with server(directory, config) as (url, key):
        return post_all(url, key, payloads, points, store, directory, concurrency, "HTTP → SQLite")


def http_kafka(
    directory: Path,
    bootstrap: str,
    store: str,
    workers: int,
    points: int,
    payloads: list[bytes],
    concurrency: int,
) -> float:
    topic = f"bench-{uuid.uuid4().hex[:10]}"
    group = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic, 4)
    config = make_config(directory, store, f"kafka://{bootstrap}/{topic}", group)
    config_file = directory / f"{group}.yaml"
    config_file.write_text(json.dumps(config.model_dump(mode="json")))
    logs = [(directory / f"{group}-{i}.log").open("wb") for i in range(workers)]
    ingest = [
        subprocess.Popen(
            [DRIFTLOOP, "ingest", "--config", str(config_file), "--json"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        for log in logs
    ]
    try:
        wait_for_group(bootstrap, group, workers)
        with server(directory, config) as (url, key):
            return post_all(
                url, key, payloads, points, store, directory, concurrency, "HTTP → Kafka → PG"
            )
    finally:
        for process in ingest:
            process.terminate()
        for process in ingest:
            process.wait(timeout=60)
        for log in logs:
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1_000, help="points per request")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads")
    parser.add_argument("--ingest-workers", type=int, default=2)
    args = parser.parse_args()
    points: int = args.points
    payloads = bodies(points, args.batch)
    postgres = service_url("postgres")
    bootstrap = service_url("kafka").removeprefix("kafka://")
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-") as temporary:
        directory = Path(temporary)
        sqlite = f"sqlite:///{directory / 'in-process.db'}"
        local = local_path("in-process → SQLite", directory, sqlite, points, None)
        over_http = http_local(directory, points, payloads, args.concurrency)
        rows.append(("SQLite (transport: local://)", local.points_per_second, over_http))
        with fresh_postgres(postgres) as store:
            kafka = kafka_path(directory, bootstrap, store, 4, args.ingest_workers, points, None)
        with fresh_postgres(postgres) as store:
            kafka_http = http_kafka(
                directory,
                bootstrap,
                store,
                args.ingest_workers,
                points,
                payloads,
                args.concurrency,
            )
        rows.append(("Kafka → PostgreSQL", kafka.points_per_second, kafka_http))
    print(
        f"{points} points of model_confidence over {len(MODELS)} models; HTTP: {args.batch} "
        f"points per request from {args.concurrency} client threads to `driftloop serve`; "
        f"kafka: 4 partitions, {args.ingest_workers} ingest workers\n"
    )
    print("| into | in-process points/s | HTTP points/s | HTTP / in-process |")
    print("|---|---:|---:|---:|")
    for into, in_process, http in rows:
        print(f"| {into} | {in_process:,.0f} | {http:,.0f} | {http / in_process:.2f} |")


if __name__ == "__main__":
    main()
