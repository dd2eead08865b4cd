"""A model served elsewhere reports through a driftloop server whose transport is Kafka (#19
part 8): a separate process on loopback, with its own model and nothing but an HTTP client,
posts insights (``POST /v1/insights``) and logs its predictions (``POST
/v1/models/{name}/predictions``), a retried batch of each included; the server publishes the
points to a real Apache Kafka broker, the ingest worker stores them, and every point arrives
once: none lost, none doubled."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from driftloop.config import Config, InsightsConfig, KafkaConfig
from driftloop.insights.kafka import KafkaIngestWorker, KafkaTransport, ensure_topic
from driftloop.serving import Scope
from driftloop.serving.tables import predictions
from driftloop.system import DriftloopSystem
from serving.live import live_server

pytestmark = pytest.mark.kafka

REPORTER = Path(__file__).with_name("external_reporter.py")
COUNT = 300
"""Predictions the external service makes: 2 insight points each, and each logged once."""


def stored(system: DriftloopSystem, metric: str) -> int:
    counts = system.metric_store.query(metric, "count", time.time() - 3600, time.time() + 60)
    return int(sum(result.value or 0 for result in counts))


def test_an_external_service_reports_over_http_into_kafka_and_the_store(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = f"driftloop-external-{uuid.uuid4().hex[:10]}"
    assert ensure_topic(kafka_bootstrap, topic, 2)
    config = Config(
        store=f"sqlite:///{tmp_path / 'driftloop.db'}",
        transport=f"kafka://{kafka_bootstrap}/{topic}",
        base_dir=tmp_path,
        models={"churn": {"labels": ["churn", "stay"]}},
        insights=InsightsConfig(outbox="outbox", flush_interval=0.05),
        kafka=KafkaConfig.model_validate(
            {
                "group_id": f"ingest-{topic}",
                "session_timeout": "2s",
                "heartbeat_interval": "0.5s",
                "poll_timeout": "0.2s",
            }
        ),
    )
    system = DriftloopSystem(config)
    assert isinstance(system.transport, KafkaTransport)
    key = system.api_keys.create(Scope.INSIGHTS, name="churn-service").key
    with live_server(system.create_app(poll=False)) as url:
        reporter = subprocess.run(
            [sys.executable, str(REPORTER), url, "churn", str(COUNT)],
            capture_output=True,
            text=True,
            timeout=120,
            env={"DRIFTLOOP_KEY": key, "PATH": ""},
            check=False,
        )
        assert reporter.returncode == 0, reporter.stderr
        summary = json.loads(reporter.stdout)
        assert system.insights.flush()  # the server's points are all in Kafka
    # every point the server accepted, the retried batch too; logged ids are kept once
    assert summary == {"insights": 2 * COUNT + 50, "logged": COUNT, "duplicates": 50}
    worker = KafkaIngestWorker.from_config(config)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    expected = {"latency_ms": COUNT, "model_confidence": 2 * COUNT}  # reported + logged
    deadline = time.monotonic() + 60
    while {m: stored(system, m) for m in expected} != expected:
        assert time.monotonic() < deadline, {m: stored(system, m) for m in expected}
        time.sleep(0.2)
    time.sleep(1.0)  # anything still in flight would show up as a double now
    stop.set()
    thread.join(timeout=30)
    assert {m: stored(system, m) for m in expected} == expected
    with system.database.engine.connect() as connection:
        logged = connection.execute(
            sa.select(sa.func.count()).where(predictions.c.model == "churn")
        ).scalar()
    assert logged == COUNT
