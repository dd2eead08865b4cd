"""The producer side: :class:`KafkaTransport`, used by the SDK in every serving process."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from driftloop.config import KafkaConfig
from driftloop.errors import BackendUnavailableError, ConfigError
from driftloop.insights.kafka.wire import (
    CONTENT_TYPE,
    MODEL_TAG,
    encode_message,
    logger,
    milliseconds,
    parse_kafka_url,
)
from driftloop.insights.transports import Transport
from driftloop.metrics.points import MetricPoint, MetricStore

if TYPE_CHECKING:
    from driftloop.config import Config


@dataclass
class _DeliveryTally:
    """Delivery reports of one publish."""

    delivered: int = 0
    errors: list[KafkaError] = field(default_factory=list)

    def on_delivery(self, error: KafkaError | None, message: Message) -> None:
        del message
        if error is None:
            self.delivered += 1
        else:
            self.errors.append(error)


@dataclass(frozen=True)
class KafkaTransportStats:
    """What a :class:`KafkaTransport` has sent."""

    messages: int
    points: int
    failed_publishes: int


class KafkaTransport(Transport):
    """Publishes insight batches to a Kafka topic, keyed by model, confirmed by delivery reports."""

    def __init__(self, bootstrap: str, topic: str, settings: KafkaConfig | None = None) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.settings = settings or KafkaConfig()
        self._lock = threading.Lock()
        self._producer: Producer | None = None
        self._messages = 0
        self._points = 0
        self._failed = 0

    @property
    def producer_config(self) -> dict[str, Any]:
        s = self.settings
        return {
            "bootstrap.servers": self.bootstrap,
            "client.id": "driftloop-insights",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": max(0, round(s.linger * 1000)),
            "message.timeout.ms": milliseconds(s.delivery_timeout),
            "socket.connection.setup.timeout.ms": max(1000, milliseconds(s.delivery_timeout)),
            "logger": logger,  # librdkafka's own log lines go through Python logging
            **s.producer,
        }

    def _open(self) -> Producer:
        if self._producer is None:
            try:
                self._producer = Producer(self.producer_config)
            except KafkaException as exc:
                raise ConfigError(f"kafka producer settings (kafka.producer): {exc}") from exc
        return self._producer

    def messages(
        self, points: Sequence[MetricPoint]
    ) -> list[tuple[bytes | None, list[MetricPoint]]]:
        """The (key, points) of each message a batch becomes: split by model, order kept."""
        by_model: dict[str | None, list[MetricPoint]] = {}
        for point in points:
            by_model.setdefault(point.tags.get(MODEL_TAG), []).append(point)
        size = self.settings.max_points_per_message
        return [
            (None if model is None else model.encode(), group[start : start + size])
            for model, group in by_model.items()
            for start in range(0, len(group), size)
        ]

    def publish(self, points: Sequence[MetricPoint]) -> None:
        if not points:
            return
        with self._lock:
            producer = self._open()
            tally = _DeliveryTally()
            messages = self.messages(points)
            deadline = time.monotonic() + self.settings.delivery_timeout + 1.0
            for key, chunk in messages:
                self._produce(producer, key, encode_message(chunk), tally, deadline)
            remaining = producer.flush(max(0.0, deadline - time.monotonic()))
            if remaining or tally.errors or tally.delivered < len(messages):
                self._failed += 1
                if remaining:
                    # what is still queued would only be retried by librdkafka after we have
                    # spooled the batch: drop it here; a late duplicate is deduplicated anyway
                    producer.purge(in_queue=True, in_flight=False)
                    producer.flush(0)
                fatal = any(error.fatal() for error in tally.errors)
                if fatal:
                    self._producer = None
                reason = (
                    f"{remaining} message(s) undelivered after {self.settings.delivery_timeout:g}s"
                    if remaining
                    else str(tally.errors[0])
                    if tally.errors
                    else "delivery reports missing"
                )
                raise BackendUnavailableError(
                    f"kafka {self.bootstrap} topic {self.topic!r}: {reason}"
                )
            self._messages += len(messages)
            self._points += len(points)

    def _produce(
        self,
        producer: Producer,
        key: bytes | None,
        value: bytes,
        tally: _DeliveryTally,
        deadline: float,
    ) -> None:
        while True:
            try:
                producer.produce(
                    self.topic,
                    value=value,
                    key=key,
                    on_delivery=tally.on_delivery,
                    headers=[("content-type", CONTENT_TYPE)],
                )
                return
            except BufferError:
                # the local queue is full: let deliveries drain it, up to the deadline
                if time.monotonic() >= deadline:
                    raise BackendUnavailableError(
                        f"kafka {self.bootstrap}: the producer queue stays full"
                    ) from None
                producer.poll(0.05)
            except KafkaException as exc:
                raise BackendUnavailableError(f"kafka {self.bootstrap}: {exc}") from exc

    @property
    def stats(self) -> KafkaTransportStats:
        return KafkaTransportStats(self._messages, self._points, self._failed)

    def close(self) -> None:
        with self._lock:
            if self._producer is not None:
                self._producer.flush(self.settings.delivery_timeout)
                self._producer = None


def create_kafka_transport(
    url: str, *, config: Config | None = None, store: MetricStore | None = None
) -> KafkaTransport:
    """Factory for ``kafka://`` URLs (registered in :data:`~driftloop.insights.TRANSPORTS`)."""
    del store  # the ingest workers own the store
    address = parse_kafka_url(url)
    return KafkaTransport(
        address.bootstrap, address.topic, config.kafka if config is not None else None
    )
