"""``transport: kafka://...`` and ``driftloop ingest`` against a real Apache Kafka broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
from confluent_kafka import Consumer, Producer
from pydantic import ValidationError

from driftloop.config import Config, InsightsConfig, KafkaConfig
from driftloop.database import Database, open_database
from driftloop.errors import BackendUnavailableError, ConfigError
from driftloop.insights import InsightsClient, open_transport
from driftloop.insights.kafka import (
    IngestStats,
    KafkaIngestWorker,
    KafkaTransport,
    decode_message,
    encode_message,
    parse_kafka_url,
)
from driftloop.metrics.points import MetricPoint, PointBatch
from driftloop.metrics.sql import SqlMetricStore
from waiting import wait_for

from .conftest import count_points

REPO = Path(__file__).resolve().parents[2]
SERVICE_SCRIPTS = REPO / "scripts" / "services"
FAST_GROUP = {"session_timeout": "2s", "heartbeat_interval": "0.5s", "poll_timeout": "0.2s"}


def kafka_config(tmp_path: Path, transport: str, **kafka: object) -> Config:
    settings = {**FAST_GROUP, "group_id": f"ingest-{tmp_path.name[-20:]}", **kafka}
    return Config(
        store=f"sqlite:///{tmp_path / 'driftloop.db'}",
        transport=transport,
        base_dir=tmp_path,
        insights=InsightsConfig(outbox="outbox", flush_interval=0.05),
        kafka=KafkaConfig.model_validate(settings),
    )


def store_of(config: Config) -> SqlMetricStore:
    return SqlMetricStore.from_config(
        open_database(config.store, base_dir=config.base_dir), config.metrics
    )


class WorkerThread:
    """A :class:`KafkaIngestWorker` polling in a thread of the test process."""

    def __init__(self, worker: KafkaIngestWorker) -> None:
        self.worker = worker
        self.stop = threading.Event()
        self.result: IngestStats | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.result = self.worker.run(self.stop)

    def close(self) -> IngestStats:
        self.stop.set()
        self.thread.join(timeout=30)
        assert self.result is not None
        return self.result


# --- without a broker --------------------------------------------------------------------


def test_kafka_urls_are_checked() -> None:
    assert (
        parse_kafka_url("kafka://127.0.0.1:9092/driftloop.insights").topic == "driftloop.insights"
    )
    assert parse_kafka_url("kafka://a:1,b:2/t").bootstrap == "a:1,b:2"
    for bad in (
        "kafka://127.0.0.1:9092",
        "kafka://127.0.0.1:9092/",
        "kafka://host/t",
        "kafka://h:1/a/b",
        "kafka://h:1/t%20x",
    ):
        with pytest.raises(ConfigError):
            parse_kafka_url(bad)


def test_batches_become_one_message_per_model_in_order(tmp_path: Path) -> None:
    transport = open_transport(
        kafka_config(tmp_path, "kafka://127.0.0.1:9/t", max_points_per_message=3)
    )
    assert isinstance(transport, KafkaTransport)
    points = [
        MetricPoint(
            "model_confidence", i / 10, 1000.0 + i, {"model": "a" if i % 3 else "b"}, f"p{i}"
        )
        for i in range(10)
    ]
    messages = transport.messages(points)
    assert [(key, [p.point_id for p in chunk]) for key, chunk in messages] == [
        (b"b", ["p0", "p3", "p6"]),
        (b"b", ["p9"]),
        (b"a", ["p1", "p2", "p4"]),
        (b"a", ["p5", "p7", "p8"]),
    ]
    decoded = decode_message(encode_message(points))
    assert decoded == points
    assert decoded[1].tags is decoded[2].tags  # one mapping per distinct tags, for the store
    assert list(transport.messages(PointBatch.of(points))) == messages  # the SDK's columns
    with pytest.raises(ValueError, match="line 2"):
        decode_message(b'{"n":"x","v":1,"t":1}\nnot json')


def test_an_unreachable_broker_makes_the_client_spool(tmp_path: Path) -> None:
    config = kafka_config(tmp_path, "kafka://127.0.0.1:9/insights", delivery_timeout="0.5s")
    transport = open_transport(config)
    point = MetricPoint("model_confidence", 0.9, time.time(), {"model": "m"}, "x1")
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match=r"127\.0\.0\.1:9"):
        transport.publish([point])
    assert time.monotonic() - started < 5
    client = InsightsClient.from_config(config, transport=transport)
    try:
        client.report({"model_confidence": 0.8}, {"model": "m"})
        assert not client.flush()
        stats = client.stats
        assert (stats.spooled, stats.outbox_pending, stats.transport_healthy) == (1, 1, False)
    finally:
        client.close()
        transport.close()


def test_ingest_refuses_a_config_without_a_kafka_transport(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from driftloop.cli import app

    (tmp_path / "driftloop.yaml").write_text("transport: local://\n")
    result = CliRunner().invoke(app, ["ingest", "--config", str(tmp_path / "driftloop.yaml")])
    assert result.exit_code == 1
    assert "needs transport: kafka://" in result.output


# --- against the broker ------------------------------------------------------------------


@pytest.mark.kafka
def test_points_flow_from_the_sdk_through_kafka_into_the_store(
    kafka_bootstrap: str, kafka_topic: Callable[[int], str], tmp_path: Path
) -> None:
    topic = kafka_topic(3)
    config = kafka_config(tmp_path, f"kafka://{kafka_bootstrap}/{topic}", max_points_per_message=50)
    client = InsightsClient.from_config(config)
    assert isinstance(client.transport, KafkaTransport)
    now = time.time()
    for i in range(600):
        model = ("reviews", "churn", "spam")[i % 3]
        client.report(
            {"model_confidence": 0.5 + (i % 50) / 100},
            {"model": model, "version": "1"},
            timestamp=now - 600 + i,
        )
    assert client.flush()
    # a message no decoder understands is set aside, not lost and not fatal
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, value=b"\x00garbage", key=b"reviews")
    assert producer.flush(10) == 0
    client.close()
    transport_stats = client.transport.stats
    assert transport_stats.points == 600
    assert transport_stats.messages == 12  # 200 points per model, 50 per message

    worker = KafkaIngestWorker.from_config(config)
    stats = worker.run(threading.Event(), idle_exit=3.0)
    assert (stats.points, stats.stored, stats.duplicates, stats.dead_letters) == (600, 600, 0, 1)
    assert stats.commits >= 1  # auto-commit of the stored offsets (and on close)
    # the poison message is on the dead-letter topic, bytes, key and origin intact
    dead_letters = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"dlq-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    dead_letters.subscribe([f"{topic}.dead-letter"])
    try:
        [dead] = dead_letters.consume(1, 20)
    finally:
        dead_letters.close()
    assert (dead.value(), dead.key()) == (b"\x00garbage", b"reviews")
    pairs = cast(list[tuple[str, bytes]], dead.headers() or [])
    headers = {name: value.decode() for name, value in pairs}
    assert headers["driftloop-topic"] == topic
    assert headers["driftloop-error"].startswith("undecodable")
    assert int(headers["driftloop-offset"]) >= 0
    # and the ingest group moved past it: a second worker finds nothing left
    again = KafkaIngestWorker.from_config(config).run(threading.Event(), idle_exit=2.0)
    assert (again.messages, again.dead_letters) == (0, 0)
    store = store_of(config)
    counts = {
        r.group["model"]: r.count
        for r in store.query("model_confidence", "count", now - 700, now, group_by=["model"])
    }
    assert counts == {"reviews": 200, "churn": 200, "spam": 200}

    # keyed by model: each model's messages sit on one partition, in the order reported
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"check-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen: dict[str, list[tuple[int, float]]] = {}
    try:
        deadline = time.monotonic() + 30
        while sum(len(v) for v in seen.values()) < 600 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error() or message.key() is None:
                continue
            key = (message.key() or b"").decode()
            if message.value() == b"\x00garbage":
                continue
            for point in decode_message(message.value()):
                seen.setdefault(key, []).append((message.partition() or 0, point.timestamp))
    finally:
        consumer.close()
    for model, entries in seen.items():
        assert len({partition for partition, _ in entries}) == 1, model
        stamps = [stamp for _, stamp in entries]
        assert stamps == sorted(stamps)
        assert len(stamps) == 200


@pytest.mark.kafka
def test_two_ingest_workers_split_the_partitions(
    kafka_bootstrap: str, kafka_topic: Callable[[int], str], tmp_path: Path
) -> None:
    topic = kafka_topic(4)
    config = kafka_config(tmp_path, f"kafka://{kafka_bootstrap}/{topic}", max_points_per_message=20)
    database = open_database(config.store, base_dir=config.base_dir)
    workers = [WorkerThread(KafkaIngestWorker.from_config(config)) for _ in range(2)]
    try:

        def split() -> bool:
            parts = [set(w.worker.stats.assigned_partitions) for w in workers]
            return (
                all(parts) and parts[0].isdisjoint(parts[1]) and parts[0] | parts[1] == {0, 1, 2, 3}
            )

        wait_for(split, 60, "both workers to hold partitions")
        with InsightsClient.from_config(config) as client:
            now = time.time()
            for i in range(2000):
                client.report(
                    {"model_confidence": 0.9},
                    {"model": f"model-{i % 16}", "version": "1"},
                    timestamp=now - 100 + i / 100,
                )
        wait_for(lambda: count_points(database).rows >= 2000, 60, "2000 points in the store")
        time.sleep(0.5)
    finally:
        results = [w.close() for w in workers]
    assert all(r.stored > 0 for r in results), results
    assert sum(r.stored for r in results) == 2000
    assert count_points(database) == count_points(database).__class__(2000, 2000, 2000)


def _write_config_file(config: Config, path: Path) -> Path:
    path.write_text(json.dumps(config.model_dump(mode="json")))  # YAML is a superset of JSON
    return path


def _ingest(config_file: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``driftloop ingest`` as a subprocess; stdout to ``log``, stderr to ``log.err``."""
    with log.open("wb") as out, log.with_suffix(".err").open("wb") as err:
        return subprocess.Popen(
            [
                str(Path(sys.executable).parent / "driftloop"),
                "ingest",
                "--config",
                str(config_file),
                *args,
            ],
            stdout=out,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


@pytest.mark.kafka
def test_kill_9_of_an_ingest_worker_mid_stream_loses_and_doubles_nothing(
    kafka_bootstrap: str, kafka_topic: Callable[[int], str], tmp_path: Path
) -> None:
    topic = kafka_topic(2)
    # offsets are committed only on close or revocation: a worker killed with SIGKILL has
    # stored points whose offsets were never committed, so its successor gets them again
    config = kafka_config(
        tmp_path,
        f"kafka://{kafka_bootstrap}/{topic}",
        max_points_per_message=20,
        max_batch_messages=2,
        commit_interval="1h",
    )
    config_file = _write_config_file(config, tmp_path / "driftloop.yaml")
    database = open_database(config.store, base_dir=config.base_dir)
    total = 12_000
    with InsightsClient.from_config(config) as client:
        now = time.time()
        for i in range(total):
            client.report(
                {"model_confidence": (i % 100) / 100},
                {"model": f"m{i % 8}", "version": "1"},
                timestamp=now - 300 + i / 100,
            )
    first = _ingest(config_file, tmp_path / "first.log")
    try:
        wait_for(
            lambda: count_points(database).rows >= 1000, 90, "the first worker to store some points"
        )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    stored_by_first = count_points(database).rows
    assert 0 < stored_by_first < total, "kill came too late to be mid-stream"
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": config.kafka.group_id})
    from confluent_kafka import TopicPartition

    committed = consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
    consumer.close()
    assert all(tp.offset < 0 for tp in committed)  # nothing committed: all of it comes again

    second = _ingest(config_file, tmp_path / "second.log", "--until-idle", "4", "--json")
    assert second.wait(timeout=180) == 0, (tmp_path / "second.err").read_text()
    stats = json.loads((tmp_path / "second.log").read_text())
    assert stats["duplicates"] >= stored_by_first  # the redelivered batches were skipped
    assert stats["stored"] == total - stored_by_first
    assert count_points(database) == count_points(database).__class__(total, total, total)


def _private_kafka(services_dir: Path, command: str) -> str:
    result = subprocess.run(
        [str(SERVICE_SCRIPTS / "kafka.sh"), command],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "DRIFTLOOP_SERVICES_DIR": str(services_dir)},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A broker of this test's own (its own DRIFTLOOP_SERVICES_DIR), so stopping it leaves
    the session's broker alone."""
    services = tmp_path / "services"
    url = _private_kafka(services, "start")
    try:
        yield url.removeprefix("kafka://"), services
    finally:
        _private_kafka(services, "clean")


@pytest.mark.kafka
@pytest.mark.slow
def test_a_broker_outage_under_traffic_spools_and_every_point_arrives(
    private_kafka: tuple[str, Path], tmp_path: Path
) -> None:
    from driftloop.insights.kafka import ensure_topic

    bootstrap, services = private_kafka
    topic = "insights-outage"
    ensure_topic(bootstrap, topic, 2)
    config = kafka_config(tmp_path, f"kafka://{bootstrap}/{topic}", delivery_timeout="1s")
    database = open_database(config.store, base_dir=config.base_dir)
    client = InsightsClient(
        open_transport(config),
        outbox=tmp_path / "outbox",
        batch_size=200,
        flush_interval=0.05,
        max_retry_interval=1.0,
        owns_transport=True,
    )
    worker = WorkerThread(KafkaIngestWorker.from_config(config))
    stop_traffic = threading.Event()
    reported = 0

    def traffic() -> None:
        nonlocal reported
        while not stop_traffic.is_set():
            for _ in range(20):
                client.report({"model_confidence": 0.7}, {"model": f"m{reported % 4}"})
                reported += 1
            time.sleep(0.01)

    sender = threading.Thread(target=traffic, daemon=True)
    sender.start()
    try:
        wait_for(lambda: count_points(database).rows > 200, 60, "points before the outage")
        _private_kafka(services, "stop")
        wait_for(lambda: client.stats.spooled > 500, 30, "the client to spool")
        time.sleep(2)  # the broker stays down for a while under traffic
        assert client.stats.transport_healthy is False
        assert _private_kafka(services, "start").removeprefix("kafka://") == bootstrap
        wait_for(lambda: client.stats.replayed > 0, 60, "the outbox to replay")
        time.sleep(1)
    finally:
        stop_traffic.set()
        sender.join(timeout=10)
    assert client.flush()
    stats = client.stats
    client.close()
    assert stats.reported == reported
    assert stats.dropped == 0
    assert stats.spooled > 500
    assert stats.replayed > 0
    assert stats.outbox_pending == 0
    try:
        wait_for(lambda: count_points(database).rows >= reported, 90, "every point in the store")
    except pytest.fail.Exception:  # say where the points stopped (one CI run timed out here)
        pytest.fail(
            f"{count_points(database)} stored of {reported} reported; the ingest worker "
            f"{'runs' if worker.thread.is_alive() else 'has stopped'}: {worker.worker.stats}"
        )
    time.sleep(0.5)
    worker.close()
    assert count_points(database) == count_points(database).__class__(reported, reported, reported)


@pytest.mark.kafka
@pytest.mark.postgres
def test_a_store_outage_rewinds_and_retries_the_batch(
    kafka_bootstrap: str, kafka_topic: Callable[[int], str], fresh_postgres_url: str, tmp_path: Path
) -> None:
    import sqlalchemy as sa

    topic = kafka_topic(1)
    config = kafka_config(tmp_path, f"kafka://{kafka_bootstrap}/{topic}").model_copy(
        update={"store": fresh_postgres_url}
    )
    with InsightsClient.from_config(config) as client:
        for i in range(300):
            client.report({"model_confidence": 0.5}, {"model": "m"}, timestamp=1e9 + i)
    database = Database(fresh_postgres_url)
    database.migrate()
    worker = KafkaIngestWorker(
        parse_kafka_url(config.transport).bootstrap,
        topic,
        SqlMetricStore.from_config(database, config.metrics),
        config.kafka.model_copy(update={"max_batch_messages": 1}),
    )
    name = sa.engine.make_url(fresh_postgres_url).database
    admin = sa.create_engine(
        sa.engine.make_url(fresh_postgres_url).set(database="postgres"),
        isolation_level="AUTOCOMMIT",
    )

    def outage(on: bool) -> None:
        with admin.connect() as connection:
            connection.execute(
                sa.text(
                    f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {"false" if on else "true"}'
                )
            )
            if on:
                connection.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
                    )
                )

    outage(True)
    try:
        wait_for(
            lambda: (worker.poll_once(), worker.stats.store_failures)[1] >= 2,
            60,
            "failed writes while the database refuses connections",
        )
        assert worker.stats.stored == 0
    finally:
        outage(False)
        admin.dispose()
    deadline = time.monotonic() + 60
    while worker.stats.stored < 300 and time.monotonic() < deadline:
        worker.poll_once()
    worker.close()
    assert count_points(database) == count_points(database).__class__(300, 300, 300)
    database.dispose()


def test_the_dead_letter_file_setting_is_gone_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="dead_letter_topic"):
        KafkaConfig.model_validate({"dead_letter": ".driftloop/dead.jsonl"})
    assert KafkaConfig().dead_letter_topic is None
    worker = KafkaIngestWorker(
        "127.0.0.1:9", "insights", store_of(kafka_config(tmp_path, "kafka://127.0.0.1:9/insights"))
    )
    assert worker.dead_letter_topic == "insights.dead-letter"
    assert worker.consumer_config["enable.auto.commit"] is True
    assert worker.consumer_config["enable.auto.offset.store"] is False
