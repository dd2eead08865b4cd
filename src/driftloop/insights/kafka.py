"""``kafka://host:9092/topic``: insight batches through Apache Kafka, drained by ingest workers.

Producer side (:class:`KafkaTransport`, used by the SDK in every serving process): a batch of
points is split by its ``model`` tag and sent as one message per model (at most
``kafka.max_points_per_message`` points each, JSON lines as in the outbox), keyed by the model
name, so one model's points land on one partition and stay in order. The producer is
idempotent (``enable.idempotence``); :meth:`KafkaTransport.publish` waits for the delivery
report of every message and raises :class:`~driftloop.errors.BackendUnavailableError` when one
failed or did not arrive within ``kafka.delivery_timeout``, so the
:class:`~driftloop.insights.client.InsightsClient` spools the batch to its outbox and replays it
once the broker is back.

Consumer side (:class:`KafkaIngestWorker`, ``driftloop ingest``): a member of the consumer group
``kafka.group_id``; several workers split the topic's partitions. Each poll takes up to
``kafka.max_batch_messages`` messages, writes their points to the metric store (idempotent by
``point_id``), hands them to listeners, and only then stores their offsets
(``store_offsets``; ``enable.auto.offset.store`` is off); the client's auto-commit commits the
stored offsets every ``kafka.commit_interval`` seconds, and they are committed when partitions
are revoked and on close. Delivery is at least once: a worker killed after a store write and
before the commit leaves those messages to the next owner of the partition, whose write skips
every point already stored, so nothing is counted twice. A message that cannot be decoded, or
whose points the store refuses as invalid, is produced to the dead-letter topic
(``kafka.dead_letter_topic``, default ``<topic>.dead-letter``) with its key, its bytes and
headers naming where it came from and why; its offset is stored only once the dead-letter
topic has it, so nothing is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from driftloop.config import KafkaConfig
from driftloop.errors import BackendUnavailableError, ConfigError, InvalidInputError
from driftloop.insights.local import PointListener
from driftloop.insights.outbox import decode_point, encode_point
from driftloop.insights.transports import Transport
from driftloop.metrics.points import MetricPoint, MetricStore

if TYPE_CHECKING:
    from driftloop.config import Config

logger = logging.getLogger(__name__)

CONTENT_TYPE = b"application/x-driftloop-points+jsonl; v=1"
MODEL_TAG = "model"
_RETRY_BACKOFF = (0.2, 5.0)


GROUP_JOIN_GRACE = 30.0
"""Seconds ``run(idle_exit=...)`` also allows for joining the group before it gives up."""


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
        raise ConfigError(
            f"transport {url!r}: expected kafka://HOST:PORT[,HOST:PORT...]/TOPIC"
        )
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


def _milliseconds(seconds: float) -> int:
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


# --- producer ----------------------------------------------------------------------------


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
            "message.timeout.ms": _milliseconds(s.delivery_timeout),
            "socket.connection.setup.timeout.ms": max(1000, _milliseconds(s.delivery_timeout)),
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
            (None if model is None else model.encode(), group[start:start + size])
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
                    if remaining else
                    str(tally.errors[0]) if tally.errors else "delivery reports missing"
                )
                raise BackendUnavailableError(
                    f"kafka {self.bootstrap} topic {self.topic!r}: {reason}"
                )
            self._messages += len(messages)
            self._points += len(points)

    def _produce(
        self, producer: Producer, key: bytes | None, value: bytes, tally: _DeliveryTally,
        deadline: float,
    ) -> None:
        while True:
            try:
                producer.produce(
                    self.topic, value=value, key=key, on_delivery=tally.on_delivery,
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
    return KafkaTransport(address.bootstrap, address.topic,
                          config.kafka if config is not None else None)


# --- consumer group ----------------------------------------------------------------------


@dataclass(frozen=True)
class IngestStats:
    """What a :class:`KafkaIngestWorker` has done so far."""

    messages: int
    points: int
    stored: int
    """Points new to the store."""
    duplicates: int
    """Redelivered points the store already held (skipped)."""
    dead_letters: int
    commits: int
    store_failures: int
    assigned_partitions: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages, "points": self.points, "stored": self.stored,
            "duplicates": self.duplicates, "dead_letters": self.dead_letters,
            "commits": self.commits, "store_failures": self.store_failures,
            "assigned_partitions": list(self.assigned_partitions),
        }


class KafkaIngestWorker:
    """A consumer-group member that drains insight messages into a :class:`MetricStore`."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        store: MetricStore,
        settings: KafkaConfig | None = None,
        *,
        listeners: Iterable[PointListener] = (),
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.store = store
        self.settings = settings or KafkaConfig()
        self.listeners = list(listeners)
        self.dead_letter_topic = self.settings.dead_letter_topic or f"{topic}.dead-letter"
        self._consumer: Consumer | None = None
        self._dead_letter_producer: Producer | None = None
        self._assigned: set[int] = set()
        self._backoff = _RETRY_BACKOFF[0]
        self._messages = 0
        self._points = 0
        self._stored = 0
        self._duplicates = 0
        self._dead_letters = 0
        self._commits = 0
        self._store_failures = 0

    @classmethod
    def from_config(
        cls, config: Config, *, store: MetricStore | None = None,
        listeners: Iterable[PointListener] = (),
    ) -> KafkaIngestWorker:
        """The worker for ``config.transport`` (a ``kafka://`` URL), writing to ``store``
        (default: the SQL metric store of ``config.store``)."""
        if not config.transport.startswith("kafka://"):
            raise ConfigError(
                f"driftloop ingest needs transport: kafka://HOST:PORT/TOPIC, "
                f"not {config.transport!r}"
            )
        address = parse_kafka_url(config.transport)
        if store is None:
            from driftloop.metrics.sql import SqlMetricStore
            from driftloop.store import open_database

            store = SqlMetricStore.from_config(
                open_database(config.store, base_dir=config.base_dir), config.metrics
            )
        return cls(address.bootstrap, address.topic, store, config.kafka, listeners=listeners)

    @property
    def consumer_config(self) -> dict[str, Any]:
        s = self.settings
        return {
            "bootstrap.servers": self.bootstrap,
            "group.id": s.group_id,
            "client.id": "driftloop-ingest",
            "enable.auto.commit": True,
            "auto.commit.interval.ms": _milliseconds(s.commit_interval),
            "enable.auto.offset.store": False,
            "on_commit": self._on_commit,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": _milliseconds(s.session_timeout),
            "heartbeat.interval.ms": _milliseconds(s.heartbeat_interval),
            "logger": logger,
            **s.consumer,
        }

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Join the group (partitions are assigned during the next polls)."""
        if self._consumer is not None:
            return
        if self.settings.topic_partitions is not None:
            ensure_topic(self.bootstrap, self.topic, self.settings.topic_partitions)
        try:
            consumer = Consumer(self.consumer_config)
        except KafkaException as exc:
            raise ConfigError(f"kafka consumer settings (kafka.consumer): {exc}") from exc
        consumer.subscribe([self.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                           on_lost=self._on_lost)
        self._consumer = consumer

    def run(
        self,
        stop: threading.Event,
        *,
        idle_exit: float | None = None,
        on_batch: Callable[[IngestStats], None] | None = None,
    ) -> IngestStats:
        """Poll until ``stop`` is set (or, with ``idle_exit``, until no message has come for
        that many seconds since partitions were assigned: joining a group on a fresh broker
        can itself take seconds), then commit and leave the group. ``on_batch`` sees the
        counters after every poll."""
        self.start()
        started = time.monotonic()
        last_message: float | None = None
        try:
            while not stop.is_set():
                before = self._messages + self._dead_letters
                self.poll_once()
                now = time.monotonic()
                if self._messages + self._dead_letters != before:
                    last_message = now
                elif last_message is None:
                    if self._assigned:
                        last_message = now  # the idle clock starts with the assignment
                    elif (idle_exit is not None
                          and now - started >= idle_exit + GROUP_JOIN_GRACE):
                        break  # never assigned a partition (others hold them all)
                elif idle_exit is not None and now - last_message >= idle_exit:
                    break
                if on_batch is not None:
                    on_batch(self.stats)
        finally:
            self.close()
        return self.stats

    def close(self) -> None:
        """Commit what is stored and leave the group (its partitions move at once)."""
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            self._commit_stored(consumer)
        finally:
            consumer.close()
            if self._dead_letter_producer is not None:
                self._dead_letter_producer.flush(self.settings.delivery_timeout)

    # --- one batch ------------------------------------------------------------------------

    def poll_once(self) -> int:
        """Take one batch, store it, mark its offsets; returns the number of points stored."""
        if self._consumer is None:
            self.start()
        consumer = self._consumer
        assert consumer is not None
        try:
            messages = consumer.consume(self.settings.max_batch_messages,
                                        self.settings.poll_timeout)
        except KafkaException as exc:
            raise BackendUnavailableError(f"kafka {self.bootstrap}: {exc}") from exc
        batch: list[tuple[Message, list[MetricPoint]]] = []
        done: list[Message] = []
        dead: list[tuple[Message, str]] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise BackendUnavailableError(f"kafka {self.bootstrap}: {error}")
                if error.code() != KafkaError._PARTITION_EOF:
                    logger.warning("kafka consumer: %s", error)
                continue
            done.append(message)
            try:
                batch.append((message, decode_message(message.value())))
            except (ValueError, UnicodeDecodeError) as exc:
                dead.append((message, f"undecodable: {exc}"))
        try:
            stored = self._store(batch, dead) if batch else 0
            if dead:
                self._send_dead_letters(dead)
        except BackendUnavailableError as exc:
            self._store_failures += 1
            logger.warning("metric store or dead-letter topic unavailable (%s); reading the "
                           "batch again in %.1fs", exc, self._backoff)
            self._rewind(consumer, done)
            time.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, _RETRY_BACKOFF[1])
            return 0
        self._backoff = _RETRY_BACKOFF[0]
        self._store_offsets(consumer, done)
        return stored

    def _rewind(self, consumer: Consumer, messages: list[Message]) -> None:
        """Seek each partition back to the first message of a batch that was not stored."""
        first: dict[int, int] = {}
        for message in messages:
            partition, offset = message.partition(), message.offset()
            if partition is not None and offset is not None and partition not in first:
                first[partition] = offset
        for partition, offset in first.items():
            try:
                consumer.seek(TopicPartition(self.topic, partition, offset))
            except KafkaException as exc:
                # no longer ours: its next owner starts from the last committed offset
                logger.info("ingest: cannot rewind partition %d (%s)", partition, exc)

    def _store(self, batch: list[tuple[Message, list[MetricPoint]]],
               dead: list[tuple[Message, str]]) -> int:
        points = [point for _, decoded in batch for point in decoded]
        try:
            new = self._write(points)
        except InvalidInputError:
            return self._store_one_by_one(batch, dead)
        self._messages += len(batch)
        self._deliver(points)
        return new

    def _store_one_by_one(self, batch: list[tuple[Message, list[MetricPoint]]],
                          dead: list[tuple[Message, str]]) -> int:
        new = 0
        for message, points in batch:
            try:
                new += self._write(points)
            except InvalidInputError as exc:
                dead.append((message, f"refused by the store: {exc.message}"))
                continue
            self._messages += 1
            self._deliver(points)
        return new

    def _write(self, points: list[MetricPoint]) -> int:
        new = self.store.write(points)
        self._points += len(points)
        self._stored += new
        self._duplicates += len(points) - new
        return new

    def _deliver(self, points: list[MetricPoint]) -> None:
        for listener in self.listeners:
            try:
                listener(points)
            except Exception:
                logger.exception("ingest listener %r failed on %d points", listener, len(points))

    def _store_offsets(self, consumer: Consumer, messages: list[Message]) -> None:
        """Store the next offset of each partition's last handled message; auto-commit
        commits it."""
        last: dict[int, int] = {}
        for message in messages:
            partition, offset = message.partition(), message.offset()
            if partition is not None and offset is not None and partition in self._assigned:
                last[partition] = max(last.get(partition, 0), offset + 1)
        if not last:
            return
        try:
            consumer.store_offsets(offsets=[TopicPartition(self.topic, partition, offset)
                                            for partition, offset in sorted(last.items())])
        except KafkaException as exc:
            # revoked meanwhile: its next owner re-reads from the last commit; the store skips
            # what it already holds
            logger.info("ingest: offsets not stored (%s); those messages will be redelivered",
                        exc)

    def _commit_stored(self, consumer: Consumer) -> None:
        """Commit the stored offsets now (on revoke and close, besides auto-commit)."""
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError._NO_OFFSET:
                return  # nothing stored since the last commit
            logger.warning("kafka offset commit failed (%s); those messages will be redelivered",
                           exc)

    def _on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        del partitions
        if error is None:
            self._commits += 1
        elif error.code() != KafkaError._NO_OFFSET:
            logger.warning("kafka offset commit failed: %s", error)

    def _send_dead_letters(self, dead: list[tuple[Message, str]]) -> None:
        """Produce each message to the dead-letter topic and wait for the broker to have
        them all; raise :class:`BackendUnavailableError` if it does not (the batch is read
        again, so nothing is dropped)."""
        producer = self._dead_letter_producer
        if producer is None:
            ensure_topic(self.bootstrap, self.dead_letter_topic, 1)
            producer = self._dead_letter_producer = Producer({
                "bootstrap.servers": self.bootstrap, "client.id": "driftloop-ingest-dlq",
                "enable.idempotence": True, "logger": logger,
                "message.timeout.ms": _milliseconds(self.settings.delivery_timeout),
                **self.settings.producer})
        failures: list[str] = []

        def report(error: KafkaError | None, message: Message) -> None:
            del message
            if error is not None:
                failures.append(str(error))

        for message, reason in dead:
            logger.error("kafka message %s[%s]@%s set aside to %s: %s", message.topic(),
                         message.partition(), message.offset(), self.dead_letter_topic, reason)
            producer.produce(
                self.dead_letter_topic, value=message.value(), key=message.key(),
                headers=[("driftloop-error", reason.encode()),
                         ("driftloop-topic", str(message.topic()).encode()),
                         ("driftloop-partition", str(message.partition()).encode()),
                         ("driftloop-offset", str(message.offset()).encode())],
                on_delivery=report)
        left = producer.flush(self.settings.delivery_timeout)
        if failures or left:
            raise BackendUnavailableError(
                f"kafka {self.bootstrap}: the dead-letter topic {self.dead_letter_topic!r} did "
                f"not take {len(failures) + left} message(s): {failures[:1]}")
        self._dead_letters += len(dead)

    # --- rebalances -----------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        del consumer
        self._assigned.update(p.partition for p in partitions)
        logger.info("ingest: assigned partitions %s", sorted(self._assigned))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._commit_stored(consumer)
        self._assigned -= {p.partition for p in partitions}

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        del consumer
        self._assigned -= {p.partition for p in partitions}

    @property
    def stats(self) -> IngestStats:
        return IngestStats(
            messages=self._messages, points=self._points, stored=self._stored,
            duplicates=self._duplicates, dead_letters=self._dead_letters,
            commits=self._commits, store_failures=self._store_failures,
            assigned_partitions=tuple(sorted(self._assigned)),
        )


__all__ = [
    "CONTENT_TYPE",
    "IngestStats",
    "KafkaAddress",
    "KafkaIngestWorker",
    "KafkaTransport",
    "KafkaTransportStats",
    "create_kafka_transport",
    "decode_message",
    "encode_message",
    "ensure_topic",
    "parse_kafka_url",
]
