"""The consumer side: :class:`KafkaIngestWorker` (``driftloop ingest``), a consumer-group member
that drains insight messages into the metric store and sets undecodable or refused messages
aside to the dead-letter topic."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from driftloop.config import KafkaConfig
from driftloop.errors import BackendUnavailableError, ConfigError, InvalidInputError
from driftloop.insights.kafka.wire import (
    decode_message,
    ensure_topic,
    logger,
    milliseconds,
    parse_kafka_url,
)
from driftloop.insights.local import PointListener
from driftloop.metrics.points import MetricPoint, MetricStore

if TYPE_CHECKING:
    from driftloop.config import Config

_RETRY_BACKOFF = (0.2, 5.0)
GROUP_JOIN_GRACE = 30.0
"""Seconds ``run(idle_exit=...)`` also allows for joining the group before it gives up."""


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
            "messages": self.messages,
            "points": self.points,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "dead_letters": self.dead_letters,
            "commits": self.commits,
            "store_failures": self.store_failures,
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
        cls,
        config: Config,
        *,
        store: MetricStore | None = None,
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
            from driftloop.database import open_database
            from driftloop.metrics.sql import SqlMetricStore

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
            "auto.commit.interval.ms": milliseconds(s.commit_interval),
            "enable.auto.offset.store": False,
            "on_commit": self._on_commit,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": milliseconds(s.session_timeout),
            "heartbeat.interval.ms": milliseconds(s.heartbeat_interval),
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
        consumer.subscribe(
            [self.topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
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
                    elif idle_exit is not None and now - started >= idle_exit + GROUP_JOIN_GRACE:
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
            messages = consumer.consume(
                self.settings.max_batch_messages, self.settings.poll_timeout
            )
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
            logger.warning(
                "metric store or dead-letter topic unavailable (%s); reading the "
                "batch again in %.1fs",
                exc,
                self._backoff,
            )
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

    def _store(
        self, batch: list[tuple[Message, list[MetricPoint]]], dead: list[tuple[Message, str]]
    ) -> int:
        points = [point for _, decoded in batch for point in decoded]
        try:
            new = self._write(points)
        except InvalidInputError:
            return self._store_one_by_one(batch, dead)
        self._messages += len(batch)
        self._deliver(points)
        return new

    def _store_one_by_one(
        self, batch: list[tuple[Message, list[MetricPoint]]], dead: list[tuple[Message, str]]
    ) -> int:
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
            consumer.store_offsets(
                offsets=[
                    TopicPartition(self.topic, partition, offset)
                    for partition, offset in sorted(last.items())
                ]
            )
        except KafkaException as exc:
            # revoked meanwhile: its next owner re-reads from the last commit; the store skips
            # what it already holds
            logger.info("ingest: offsets not stored (%s); those messages will be redelivered", exc)

    def _commit_stored(self, consumer: Consumer) -> None:
        """Commit the stored offsets now (on revoke and close, besides auto-commit)."""
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError._NO_OFFSET:
                return  # nothing stored since the last commit
            logger.warning(
                "kafka offset commit failed (%s); those messages will be redelivered", exc
            )

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
            producer = self._dead_letter_producer = Producer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "client.id": "driftloop-ingest-dlq",
                    "enable.idempotence": True,
                    "logger": logger,
                    "message.timeout.ms": milliseconds(self.settings.delivery_timeout),
                    **self.settings.producer,
                }
            )
        failures: list[str] = []

        def report(error: KafkaError | None, message: Message) -> None:
            del message
            if error is not None:
                failures.append(str(error))

        for message, reason in dead:
            logger.error(
                "kafka message %s[%s]@%s set aside to %s: %s",
                message.topic(),
                message.partition(),
                message.offset(),
                self.dead_letter_topic,
                reason,
            )
            producer.produce(
                self.dead_letter_topic,
                value=message.value(),
                key=message.key(),
                headers=[
                    ("driftloop-error", reason.encode()),
                    ("driftloop-topic", str(message.topic()).encode()),
                    ("driftloop-partition", str(message.partition()).encode()),
                    ("driftloop-offset", str(message.offset()).encode()),
                ],
                on_delivery=report,
            )
        left = producer.flush(self.settings.delivery_timeout)
        if failures or left:
            raise BackendUnavailableError(
                f"kafka {self.bootstrap}: the dead-letter topic {self.dead_letter_topic!r} did "
                f"not take {len(failures) + left} message(s): {failures[:1]}"
            )
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
            messages=self._messages,
            points=self._points,
            stored=self._stored,
            duplicates=self._duplicates,
            dead_letters=self._dead_letters,
            commits=self._commits,
            store_failures=self._store_failures,
            assigned_partitions=tuple(sorted(self._assigned)),
        )
