"""Make ``tests/database/fixtures/release-1.db``: a store written by the release that predates
Alembic (schema version 1: ``METADATA.create_all`` and a ``driftloop_schema`` row), with rows in
every table, written by the real components (the registry, the metric store, the monitor engine,
the notification router and its notifiers, the job queue, API keys, feedback).

The fixture must come from that release's code, not from the code of the day: run this script
with a checkout of the release first on the path, e.g.::

    mkdir /tmp/release-1 && git archive 8f48c33 | tar -x -C /tmp/release-1
    PYTHONPATH=/tmp/release-1/src .venv/bin/python tests/database/make_release_1_fixture.py \\
        tests/database/fixtures/release-1.db

It uses only what a user's processes call (no test helper), so any later checkout can run it
too, but then it writes that checkout's schema. Timestamps and ids differ from run to run; the
tests compare a database with itself before and after an upgrade, never with fixed values.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import yaml

from driftloop.config import load_config
from driftloop.metrics.points import MetricPoint
from driftloop.objectstore import bundled_reviews_path
from driftloop.pipeline.queue import JobState
from driftloop.serving.feedback import FeedbackRecord
from driftloop.serving.keys import Scope
from driftloop.system import DriftloopSystem, SystemOptions
from driftloop.trainers.base import TrainingData
from driftloop.trainers.sklearn import SklearnParams, SklearnTrainer

MODEL = "review-classifier"
OTHER_MODEL = "churn"
DATASET = "reviews"


class _Clock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


class _FakeApis(BaseHTTPRequestHandler):
    """Jira (issue, comment, transitions), a Slack webhook, and a webhook that refuses."""

    def _answer(self, status: int, body: object | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path.endswith("/transitions"):
            self._answer(
                200, {"transitions": [{"id": "31", "name": "Done", "to": {"name": "Done"}}]}
            )
        else:
            self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/issue"):
            self._answer(
                201,
                {
                    "id": "10001",
                    "key": "DRIFT-1",
                    "self": f"http://{self.headers['Host']}/rest/api/2/issue/10001",
                },
            )
        elif self.path.endswith("/comment"):
            self._answer(201, {"id": "1"})
        elif self.path.endswith("/transitions"):
            self._answer(204)
        elif self.path.startswith("/slack"):
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self._answer(400, {"error": "this webhook refuses everything"})

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _fake_apis() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApis)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _config(store: Path, apis: str) -> dict[str, object]:
    return {
        "store": f"sqlite:///{store}",
        "storage": "file://storage",
        "transport": "local://",
        "public_url": "http://127.0.0.1:8000",
        "models": {
            MODEL: {
                "trainer": "sklearn",
                "data": DATASET,
                "params": {"c_grid": [1.0], "min_df": 1},
            },
            OTHER_MODEL: {
                "trainer": "sklearn",
                "data": DATASET,
                "params": {"c_grid": [1.0], "min_df": 1},
            },
        },
        "monitors": [
            {
                "name": "confidence",
                "metric": "model_confidence",
                "aggregation": "avg",
                "window": "60s",
                "group_by": ["model"],
                "min_count": 5,
                "below": {"warning": 0.5, "critical": 0.4},
                "message": "confidence of {{model}} is {{value}} @log @jira @slack @refusing "
                "{{#is_alert}}@retrain{{/is_alert}}",
            }
        ],
        "notifiers": {
            "jira": {
                "type": "jira",
                "url": f"{apis}/jira",
                "project": "DRIFT",
                "token": "jira-token",
                "resolve_transition": "Done",
            },
            "slack": {"type": "slack", "webhook_url": f"{apis}/slack/hook"},
            "refusing": {"type": "webhook", "url": f"{apis}/refusing"},
        },
    }


def make(output: Path) -> dict[str, int]:
    """Write the fixture to ``output`` (replaced); returns the row count of every table."""
    output = output.resolve()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{output}{suffix}").unlink(missing_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="driftloop-fixture-") as temporary,
        _fake_apis() as apis,
    ):
        directory = Path(temporary)
        (directory / "driftloop.yaml").write_text(
            yaml.safe_dump(_config(output, apis), sort_keys=False)
        )
        config = load_config(directory / "driftloop.yaml", environ={})
        clock = _Clock()
        system = DriftloopSystem(config, SystemOptions(clock=clock))
        _fill(system, clock)
        system.database.dispose()
    with sqlite3.connect(output) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.execute("PRAGMA journal_mode=DELETE")
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        counts = {
            table: int(connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
            for table in tables
        }
    connection.close()
    with sqlite3.connect(output) as connection:
        connection.execute("VACUUM")
    connection.close()
    return counts


def _fill(system: DriftloopSystem, clock: _Clock) -> None:
    reviews = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    frame = reviews.sample(n=160, random_state=1).reset_index(drop=True)

    # registry: two versions, aliases moved and rolled back (versions, aliases, history)
    snapshot = system.datasets.push(frame, DATASET)
    data = TrainingData(
        system.datasets.load(snapshot),
        snapshot_id=snapshot.snapshot_id,
        snapshot_hash=snapshot.content_hash,
    )
    first = SklearnTrainer(SklearnParams(c_grid=[1.0], min_df=1)).fit(data)
    second = SklearnTrainer(SklearnParams(c_grid=[4.0], min_df=1)).fit(data)
    v1 = system.registry.register_trained(MODEL, first, trainer="sklearn", snapshot=snapshot)
    system.registry.set_alias(MODEL, "production", v1.version, actor="fixture")
    v2 = system.registry.register_trained(
        MODEL,
        second,
        trainer="sklearn",
        snapshot=snapshot,
        trigger="job:fixture",
        parent_version=v1.version,
    )
    system.registry.set_alias(MODEL, "candidate", v2.version, actor="fixture")
    system.registry.set_alias(MODEL, "production", v2.version, actor="fixture")
    system.registry.set_alias(MODEL, "production", v1.version, actor="rollback")

    # metrics (series, points, minute and hour rollups, bins, store state): low confidence
    start = clock.now - 120
    system.metric_store.write(
        [
            MetricPoint(
                "model_confidence",
                0.3 + 0.001 * i,
                start + i,
                {"model": MODEL, "version": str(v1.version)},
                point_id=f"low-{i}",
            )
            for i in range(60)
        ]
    )
    system.metric_store.write(
        [MetricPoint("model_latency_ms", 12.5 + i, start + i, {"model": MODEL}) for i in range(10)]
    )

    # monitors: ALERT → incident, events, timeline; the router delivers it to @log, @jira,
    # @slack (a graph), @refusing (a failed delivery) and @retrain (a queued job)
    clock.now = start + 61
    system.engine.evaluate(clock.now)
    external = system.engine.open_external_incident(
        "datadog", OTHER_MODEL, "p99 latency of churn", {"labels": {"model": OTHER_MODEL}}
    )

    # the job runs its steps and is rejected by the gate; another, manual one, waits
    [job] = system.queue.list(model=MODEL)
    claimed = system.queue.claim("fixture-worker")
    assert claimed is not None
    assert claimed.job_id == job.job_id
    clock.now += 1
    _, step = system.queue.enter_step(
        job.job_id, JobState.FETCHING_DATA, snapshot_id=snapshot.snapshot_id
    )
    system.queue.finish_step(step, "ok", f"snapshot {snapshot.snapshot_id}")
    clock.now += 1
    _, step = system.queue.enter_step(job.job_id, JobState.TRAINING, previous_version=v1.version)
    system.queue.finish_step(step, "ok", "trained v2")
    clock.now += 1
    system.queue.enter_step(
        job.job_id,
        JobState.GATED,
        outcome="rejected",
        log="candidate worse than production",
        candidate_version=v2.version,
    )
    system.queue.set_state(
        job.job_id,
        JobState.REJECTED,
        result={"gate": {"passed": False, "delta": -0.02}},
        error="the gate rejected the candidate",
    )
    system.enqueue_retrain(OTHER_MODEL, external, "datadog alert: p99 latency of churn")
    system.queue.enqueue(MODEL, reason="manual", trigger="manual", force=True)

    # recovery: OK closes the incident (a Jira transition, more deliveries)
    system.metric_store.write(
        [
            MetricPoint(
                "model_confidence",
                0.9,
                clock.now + i,
                {"model": MODEL, "version": str(v1.version)},
                point_id=f"high-{i}",
            )
            for i in range(60)
        ]
    )
    clock.now += 61
    system.engine.evaluate(clock.now)

    # serving: API keys (one revoked) and feedback, some with its text
    system.api_keys.create(Scope.ADMIN, name="operator")
    revoked = system.api_keys.create(Scope.PREDICT, name="old client")
    predict = system.api_keys.create(Scope.PREDICT, name="client")
    system.api_keys.revoke(revoked.info.key_id)
    system.feedback.record(
        [
            FeedbackRecord(
                prediction_id=f"p-{i}",
                model=MODEL,
                label=str(frame["label"][i]),
                version=v1.version,
                predicted_class=str(frame["label"][(i + 1) % 20]),
                key_id=predict.info.key_id,
                received_at=clock.now + i,
                text=str(frame["text"][i]) if i % 2 else None,
            )
            for i in range(20)
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    counts = make(args.output)
    for table, count in counts.items():
        print(f"{table:32} {count}")
    empty = [table for table, count in counts.items() if count == 0]
    if empty:
        print(f"tables without rows: {empty}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
