"""Where insight points go after the SDK batches them: one small interface, chosen by URL.

``transport: local://`` (the default) writes each batch straight into the metric store of the
same process; ``kafka://host:9092/topic`` (the ``kafka`` extra) publishes to a broker that a
consumer group of ingest workers drains into the store; ``https://host/`` posts to a driftloop
server's ``/v1/insights`` (a service that serves its own model).

A transport that cannot deliver raises :class:`~driftloop.errors.BackendUnavailableError`; the
:class:`~driftloop.insights.client.InsightsClient` then spools the batch to its on-disk outbox
and replays it, in order, once :meth:`Transport.publish` succeeds again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from driftloop.backends import BackendFamily
from driftloop.metrics.points import MetricPoint, MetricStore

if TYPE_CHECKING:
    from driftloop.config import Config


class Transport(ABC):
    """Delivers batches of insight points downstream."""

    @abstractmethod
    def publish(self, points: Sequence[MetricPoint]) -> None:
        """Deliver every point or raise; ``BackendUnavailableError`` when the backend is down.

        Delivery is at least once: a batch may be published again after a failure, so the
        receiving side deduplicates by ``point_id``.
        """

    def close(self) -> None:  # noqa: B027  (optional hook, nothing to release by default)
        """Release connections; the default holds none."""


TRANSPORTS: BackendFamily[Transport] = BackendFamily("transport")
TRANSPORTS.register("local", "driftloop.insights.local:create_local_transport")
TRANSPORTS.register(
    "kafka",
    "driftloop.insights.kafka:create_kafka_transport",
    requires=("confluent_kafka",),
    extra="kafka",
)
TRANSPORTS.register("http", "driftloop.insights.http:create_http_transport")
TRANSPORTS.register("https", "driftloop.insights.http:create_http_transport")


def open_transport(config: Config, *, store: MetricStore | None = None) -> Transport:
    """The transport named by ``config.transport``; ``store`` feeds a ``local://`` transport
    (by default the SQL metric store of ``config.store``). With ``dogstatsd.enabled`` every
    delivered batch is also forwarded to a Datadog agent (:mod:`driftloop.insights.dogstatsd`)."""
    transport = TRANSPORTS.create(config.transport, config=config, store=store)
    if config.dogstatsd.enabled:
        from driftloop.insights.dogstatsd import with_dogstatsd

        transport = with_dogstatsd(transport, config.dogstatsd)
    return transport
