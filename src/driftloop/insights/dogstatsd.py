"""Forward insight points to a Datadog agent as DogStatsD metrics, with Datadog's own client.

With ``dogstatsd: {enabled: true}`` in ``driftloop.yaml``, :func:`open_transport` wraps the
configured transport in a :class:`ForwardingTransport`: every batch the transport accepts is
also sent to the agent through the ``datadog`` package's ``DogStatsd`` client (the ``datadog``
extra), one line per point::

    driftloop.model_confidence:0.93|d|#model:review-classifier,version:2

Where the agent listens is the client's business, as in every Datadog integration:
``dogstatsd.socket_path`` (a Unix socket), else ``dogstatsd.host``/``port``, else the
environment (``DD_DOGSTATSD_URL`` such as ``unix:///var/run/datadog/dsd.socket`` or
``udp://agent:8125``, which wins over both; ``DD_AGENT_HOST``, ``DD_DOGSTATSD_PORT``), else
``localhost:8125``. ``DD_ENV``, ``DD_SERVICE`` and ``DD_VERSION`` become the ``env``,
``service`` and ``version`` tags of every line (unified service tagging).

The metric type (``dogstatsd.metric_type``) is ``d``, a *distribution*, by default: each
prediction's confidence is one sample, and Datadog aggregates distributions globally on its
side, so ``avg:driftloop.model_confidence{model:...}`` and its percentiles are exact across every
serving worker and host. A gauge (``g``) keeps only the last value an agent sees in each
10-second flush, so with ``g`` the forwarder sends one line per metric and tag set per batch,
carrying the batch's mean; a histogram (``h``) is aggregated per agent, so averages across hosts
become averages of averages.

Only the metrics named in ``dogstatsd.metrics`` are forwarded, tagged with the point tags named
in ``dogstatsd.tag_keys`` (``class`` is left out by default: it multiplies the custom metrics
Datadog bills for) plus ``dogstatsd.constant_tags``. The client packs lines into datagrams of at
most ``dogstatsd.max_packet_bytes`` and flushes after each batch. Sending never blocks nor raises
into the insights pipeline: the client logs a send that failed, and the batch stays delivered to
the transport.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from driftloop.backends import require_module
from driftloop.config import DogStatsdConfig
from driftloop.errors import ConfigError
from driftloop.insights.transports import Transport
from driftloop.metrics.points import SHADOW_TAG, MetricPoint

logger = logging.getLogger(__name__)

_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.]")
_TAG_UNSAFE = re.compile(r"[^\w\-:./]")
_MAX_NAME = 200
_MAX_TAG = 200


def metric_name(prefix: str, name: str) -> str:
    """A Datadog metric name: letters, digits, ``_`` and ``.``, starting with a letter."""
    full = _NAME_UNSAFE.sub("_", f"{prefix}{name}")[:_MAX_NAME]
    if not full or not full[0].isalpha():
        raise ConfigError(
            f"DogStatsD metric name {full!r} must start with a letter (check dogstatsd.prefix)"
        )
    return full


def format_tag(key: str, value: str) -> str:
    """``key:value`` with the characters DogStatsD reserves (``|``, ``,``, ``#``, newlines)
    and any other character Datadog does not keep in tags replaced by ``_``."""
    return _TAG_UNSAFE.sub("_", f"{key}:{value}")[:_MAX_TAG]


def statsd_number(value: float) -> str:
    """A value as a statsd line carries it (ten significant digits): a wire format, not how
    values read to people (that is :func:`driftloop.messages.format_value`)."""
    return f"{value:.10g}"


@dataclass(frozen=True)
class DogStatsdStats:
    """What a forwarder has handed to the client."""

    lines: int
    batches: int


class DogStatsdForwarder:
    """Formats insight points as DogStatsD samples and sends them with ``DogStatsd``."""

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        socket_path: str | None = None,
        prefix: str = "driftloop.",
        metric_type: str = "d",
        metrics: Iterable[str] = ("model_confidence",),
        tag_keys: Iterable[str] = ("model", "version", SHADOW_TAG),
        constant_tags: Iterable[str] = (),
        max_packet_bytes: int = 1432,
    ) -> None:
        if metric_type not in {"d", "h", "g"}:
            raise ConfigError(f"dogstatsd.metric_type must be d, h or g, not {metric_type!r}")
        statsd = require_module("datadog.dogstatsd", "datadog")
        self.prefix = prefix
        self.metric_type = metric_type
        self.metrics = frozenset(metrics)
        self.tag_keys = tuple(tag_keys)
        self._names = {name: metric_name(prefix, name) for name in self.metrics}
        try:
            self.client = statsd.DogStatsd(  # type: ignore[attr-defined]
                host=host,
                port=port,
                socket_path=socket_path,
                constant_tags=[_TAG_UNSAFE.sub("_", tag) for tag in constant_tags],
                disable_buffering=False,
                max_buffer_len=max_packet_bytes,
                disable_telemetry=True,
                disable_aggregation=True,
            )
        except (OSError, ValueError) as exc:
            raise ConfigError(f"dogstatsd: cannot reach the agent's address: {exc}") from exc
        try:  # at once: the client sizes its datagrams when it opens its socket
            self.client.get_socket()
        except OSError as exc:
            logger.warning(
                "DogStatsD agent not reachable yet (%s); the client retries on each send", exc
            )
        self._send = {
            "d": self.client.distribution,
            "h": self.client.histogram,
            "g": self.client.gauge,
        }[metric_type]
        self._lock = threading.Lock()
        self._lines = 0
        self._batches = 0

    @classmethod
    def from_config(cls, config: DogStatsdConfig) -> DogStatsdForwarder:
        return cls(
            config.host,
            config.port,
            socket_path=config.socket_path,
            prefix=config.prefix,
            metric_type=config.metric_type,
            metrics=config.metrics,
            tag_keys=config.tag_keys,
            constant_tags=config.constant_tags,
            max_packet_bytes=config.max_packet_bytes,
        )

    def _tags(self, tags: Mapping[str, str]) -> tuple[str, ...]:
        return tuple(format_tag(key, tags[key]) for key in self.tag_keys if key in tags)

    def samples(self, points: Sequence[MetricPoint]) -> list[tuple[str, float, tuple[str, ...]]]:
        """``(metric, value, tags)`` for a batch: the configured metrics only; with gauges,
        one mean per metric and tag set."""
        if self.metric_type != "g":
            return [
                (self._names[p.name], float(p.value), self._tags(p.tags))
                for p in points
                if p.name in self.metrics
            ]
        sums: dict[tuple[str, tuple[str, ...]], list[float]] = {}
        for p in points:
            if p.name in self.metrics:
                entry = sums.setdefault((self._names[p.name], self._tags(p.tags)), [0.0, 0.0])
                entry[0] += p.value
                entry[1] += 1
        return [(name, total / count, tags) for (name, tags), (total, count) in sums.items()]

    def forward(self, points: Sequence[MetricPoint]) -> int:
        """Send a batch and flush it; returns the number of lines."""
        samples = self.samples(points)
        for name, value, tags in samples:
            self._send(name, float(statsd_number(value)), tags=list(tags))
        self.client.flush()
        with self._lock:
            self._lines += len(samples)
            self._batches += 1
        return len(samples)

    @property
    def stats(self) -> DogStatsdStats:
        with self._lock:
            return DogStatsdStats(self._lines, self._batches)

    def close(self) -> None:
        self.client.flush()
        self.client.close_socket()


class ForwardingTransport(Transport):
    """A transport that also forwards every batch it delivered to a DogStatsD agent."""

    def __init__(self, inner: Transport, forwarder: DogStatsdForwarder) -> None:
        self.inner = inner
        self.forwarder = forwarder

    def publish(self, points: Sequence[MetricPoint]) -> None:
        self.inner.publish(points)  # raises (and forwards nothing) when the batch is spooled
        try:
            self.forwarder.forward(points)
        except Exception:
            logger.exception("DogStatsD forwarding failed on %d points", len(points))

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.forwarder.close()


def with_dogstatsd(transport: Transport, config: DogStatsdConfig) -> Transport:
    """``transport`` wrapped in a :class:`ForwardingTransport` when ``dogstatsd.enabled``."""
    if not config.enabled:
        return transport
    return ForwardingTransport(transport, DogStatsdForwarder.from_config(config))
