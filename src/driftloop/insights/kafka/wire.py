"""The ``kafka://`` URL, the message format (the points as JSON lines, as in the outbox) and
the topic set-up shared by the producer and the ingest workers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from driftloop.errors import BackendUnavailableError, ConfigError
from driftloop.insights.outbox import decode_point, encode_point
from driftloop.metrics.points import MetricPoint

logger = logging.getLogger("driftloop.insights.kafka")
"""One logger for the producer and the workers (librdkafka's own lines go through it too)."""

CONTENT_TYPE = b"application/x-driftloop-points+jsonl; v=1"
MODEL_TAG = "model"


@dataclass(frozen=True)
class KafkaAddress:
    """What a ``kafka://`` URL names: the bootstrap servers and the topic."""

    bootstrap: str
    topic: str


def parse_kafka_url(url: str) -> KafkaAddress:
    """``kafka://host:9092[,host2:9092]/topic`` → bootstrap servers and topic."""
    parts = urlsplit(url)
    if parts.scheme != "kafka":
        raise ConfigError(f"{url!r} is not a kafka:// URL")
    topic = parts.path.strip("/")
    if not parts.netloc or not topic:
        raise ConfigError(f"transport {url!r}: expected kafka://HOST:PORT[,HOST:PORT...]/TOPIC")
    if "/" in topic or not all(c.isalnum() or c in "._-" for c in topic) or len(topic) > 249:
        raise ConfigError(
            f"transport {url!r}: topic {topic!r} may hold only letters, digits, '.', '_' "
            "and '-' (at most 249)"
        )
    for server in parts.netloc.split(","):
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"transport {url!r}: {server!r} is not HOST:PORT")
    return KafkaAddress(parts.netloc, topic)


def encode_message(points: Sequence[MetricPoint]) -> bytes:
    """One Kafka message value: the points as JSON lines (the outbox's line format)."""
    return "\n".join(encode_point(point) for point in points).encode()


def decode_message(value: bytes | None) -> list[MetricPoint]:
    """The points of one message; ``ValueError`` names the first bad line."""
    if not value:
        raise ValueError("empty message")
    points: list[MetricPoint] = []
    shared_tags: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    for number, line in enumerate(value.decode().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            points.append(decode_point(line, shared_tags))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"line {number}: {exc}") from exc
    return points


def milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def ensure_topic(bootstrap: str, topic: str, partitions: int, *, timeout: float = 30.0) -> bool:
    """Create ``topic`` with ``partitions`` partitions unless it exists; True if created."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BackendUnavailableError(f"kafka {bootstrap}: {exc}") from exc
    if topic in metadata.topics and metadata.topics[topic].error is None:
        return False
    future = admin.create_topics([NewTopic(topic, num_partitions=partitions)])[topic]
    try:
        future.result(timeout=timeout)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return False
        raise BackendUnavailableError(f"kafka {bootstrap}: cannot create {topic!r}: {exc}") from exc
    return True
