"""A real Apache Kafka broker (KRaft, one node) started by scripts/services/kafka.sh."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from driftloop.metrics.points import MetricPoint

pytestmark = pytest.mark.kafka


def _create_topic(bootstrap: str, partitions: int) -> str:
    topic = f"driftloop-test-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions)])
    futures[topic].result(timeout=30)
    return topic


def test_produce_and_consume_insight_points(kafka_bootstrap: str) -> None:
    host, port = kafka_bootstrap.split(":")
    assert (host, port.isdigit()) == ("127.0.0.1", True)
    topic = _create_topic(kafka_bootstrap, partitions=2)
    points = [
        MetricPoint(
            "model_confidence",
            0.5 + i / 100,
            1_700_000_000.0 + i,
            {"model": "churn"},
            point_id=f"p{i}",
        )
        for i in range(5)
    ]
    delivered: list[Message] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        assert error is None, error
        delivered.append(message)

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True})
    for point in points:
        producer.produce(
            topic, key=b"churn", value=json.dumps(asdict(point)).encode(), on_delivery=on_delivery
        )
    assert producer.flush(30) == 0
    assert len(delivered) == len(points)
    # Keyed by model: one model's points share a partition, so they stay ordered.
    assert len({message.partition() for message in delivered}) == 1

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"ingest-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 2000,
            "heartbeat.interval.ms": 500,
        }
    )
    received: list[MetricPoint] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        while len(received) < len(points) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            assert message.error() is None, message.error()
            assert message.key() == b"churn"
            value = message.value()
            assert value is not None
            received.append(MetricPoint(**json.loads(value)))
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert received == points
