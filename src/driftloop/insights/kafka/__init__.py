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

Modules: :mod:`.wire` (the URL, the message format, topic set-up), :mod:`.producer` and
:mod:`.ingest`.
"""

from driftloop.insights.kafka.ingest import GROUP_JOIN_GRACE, IngestStats, KafkaIngestWorker
from driftloop.insights.kafka.producer import (
    KafkaTransport,
    KafkaTransportStats,
    create_kafka_transport,
)
from driftloop.insights.kafka.wire import (
    CONTENT_TYPE,
    MODEL_TAG,
    KafkaAddress,
    decode_message,
    encode_message,
    ensure_topic,
    parse_kafka_url,
)

__all__ = [
    "CONTENT_TYPE",
    "GROUP_JOIN_GRACE",
    "MODEL_TAG",
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
