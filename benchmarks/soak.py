"""Soak at twice the measured capacity (``driftloop.testing.soak``), on real processes.

A project made the way a user makes one (``driftloop init``, ``driftloop train``, ``driftloop
keys create``), served by ``driftloop up`` on loopback; with ``--backend kafka-postgres`` the
project's store is a fresh PostgreSQL database and its transport a new Kafka topic drained by
a ``driftloop ingest`` process (services from scripts/services/, started if not running).
Prints what ``tests/reliability/test_soak.py`` checks in one minute, for as long as asked::

    .venv/bin/python benchmarks/soak.py --minutes 10
    .venv/bin/python benchmarks/soak.py --minutes 10 --backend kafka-postgres
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

from driftloop.config import load_config
from driftloop.database import open_database
from driftloop.metrics.sql import SqlMetricStore
from driftloop.testing.soak import SoakResult, run_soak
from insights_throughput import fresh_postgres, service_url

MODEL = "review-classifier"
DRIFTLOOP = str(Path(sys.executable).parent / "driftloop")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(directory: Path, *arguments: str) -> str:
    return subprocess.run(
        [DRIFTLOOP, *arguments], cwd=directory, check=True, capture_output=True, text=True
    ).stdout.strip()


@contextlib.contextmanager
def process(directory: Path, log: Path, *arguments: str) -> Iterator[subprocess.Popen[bytes]]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
    with log.open("ab") as output:
        child = subprocess.Popen(
            [DRIFTLOOP, *arguments],
            cwd=directory,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=environ,
        )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()


def wait_ready(url: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not become ready")


def stored_points(directory: Path) -> int:
    config = load_config(directory / "driftloop.yaml")
    store = SqlMetricStore.from_config(
        open_database(config.store, base_dir=config.base_dir), config.metrics
    )
    now = time.time()
    return sum(
        int(r.count)
        for r in store.query(
            "model_confidence", "count", now - 86400, now + 60, filter={"model": MODEL}
        )
    )


def soak(directory: Path, minutes: float, backend: str) -> tuple[SoakResult, int]:
    run(directory.parent, "init", directory.name)
    document = yaml.safe_load((directory / "driftloop.yaml").read_text())
    document.setdefault("serving", {})["access_log"] = False
    with contextlib.ExitStack() as stack:
        if backend == "kafka-postgres":
            store = stack.enter_context(fresh_postgres(service_url("postgres")))
            bootstrap = service_url("kafka").removeprefix("kafka://")
            topic = f"soak-{uuid.uuid4().hex[:8]}"
            document.update(store=store, transport=f"kafka://{bootstrap}/{topic}")
            document["kafka"] = {"topic_partitions": 2, "group_id": f"ingest-{topic}"}
        (directory / "driftloop.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
        run(directory, "train", MODEL)
        key = run(directory, "keys", "create", "--scope", "predict", "-q")
        if backend == "kafka-postgres":
            stack.enter_context(process(directory, directory / "ingest.log", "ingest"))
        port = free_port()
        server = stack.enter_context(
            process(directory, directory / "up.log", "up", "--port", str(port))
        )
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        result = run_soak(
            url, server.pid, {"Authorization": f"Bearer {key}"}, MODEL, duration=60.0 * minutes
        )
        server.send_signal(signal.SIGTERM)
        server.wait(60)
        deadline = time.monotonic() + 120
        stored = stored_points(directory)
        while stored < result.answered and time.monotonic() < deadline:
            time.sleep(1.0)
            stored = stored_points(directory)
        return result, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--backend", choices=("embedded", "kafka-postgres"), default="embedded")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="driftloop-soak-") as scratch:
        result, stored = soak(Path(scratch) / "project", args.minutes, args.backend)
    load = result.load
    print(f"backend {args.backend}, {args.minutes:g} min at twice the capacity")
    print(
        f"capacity {result.capacity_rps:.0f} req/s (16 clients, closed loop); "
        f"target {result.target_rps:.0f} req/s (open loop)"
    )
    print(
        f"answers {dict(sorted(load.statuses.items()))}; other errors "
        f"{result.unexpected() or 'none'}"
    )
    print(f"answered latency p50 {load.latency_ms(0.5):.0f} ms, p99 {load.latency_ms(0.99):.0f} ms")
    print(
        f"server RSS {result.rss_warm_kib / 1024:.0f} MiB after warm-up, "
        f"{result.rss_peak_late_kib / 1024:.0f} MiB at most in the last quarter "
        f"({100 * result.rss_growth:+.1f}%)"
    )
    print(
        f"insights: {result.answered} predictions answered, {stored} points stored "
        f"({'none lost' if stored >= result.answered else 'LOST'})"
    )


if __name__ == "__main__":
    main()
