"""Forward insight points to a Datadog agent as DogStatsD metrics over UDP.

With ``dogstatsd: {enabled: true}`` in ``driftloop.yaml``, :func:`open_transport` wraps the
configured transport in a :class:`ForwardingTransport`: every batch the transport accepts is
also sent to the agent, one line per point::

    driftloop.model_confidence:0.93|d|#model:review-classifier,version:2

The metric type (``dogstatsd.metric_type``) is ``d``, a *distribution*, by default: each
prediction's confidence is one sample, and Datadog aggregates distributions globally on its
side, so ``avg:driftloop.model_confidence{model:...}`` and its percentiles are exact across every
serving worker and host. A gauge (``g``) keeps only the last value an agent sees in each
10-second flush, so with ``g`` the forwarder sends one line per metric and tag set per batch,
carrying the batch's mean; a histogram (``h``) is aggregated per agent, so averages across hosts
become averages of averages.

Only the metrics named in ``dogstatsd.metrics`` are forwarded, tagged with the point tags named
in ``dogstatsd.tag_keys`` (``class`` is left out by default: it multiplies the custom metrics
Datadog bills for) plus ``dogstatsd.constant_tags``. Lines are packed into datagrams of at most
``dogstatsd.max_packet_bytes`` (the agent's default buffer is 8 KiB; 1432 bytes fits an Ethernet
frame). Sending never blocks nor raises into the insights pipeline: UDP is fire and forget, and
failures are counted (:attr:`DogStatsdForwarder.stats`) and logged once.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

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
        raise ConfigError(f"DogStatsD metric name {full!r} must start with a letter "
                          "(check dogstatsd.prefix)")
    return full


def format_tag(key: str, value: str) -> str:
    """``key:value`` with the characters DogStatsD reserves (``|``, ``,``, ``#``, newlines)
    and any other character Datadog does not keep in tags replaced by ``_``."""
    return _TAG_UNSAFE.sub("_", f"{key}:{value}")[:_MAX_TAG]


def format_value(value: float) -> str:
    return f"{value:.10g}"


@dataclass(frozen=True)
class DogStatsdStats:
    """What a forwarder has sent."""

    lines: int
    packets: int
    errors: int


class DogStatsdForwarder:
    """Formats insight points as DogStatsD lines and sends them to an agent over UDP."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8125,
        *,
        prefix: str = "driftloop.",
        metric_type: str = "d",
        metrics: Iterable[str] = ("model_confidence",),
        tag_keys: Iterable[str] = ("model", "version", SHADOW_TAG),
        constant_tags: Iterable[str] = (),
        max_packet_bytes: int = 1432,
    ) -> None:
        if metric_type not in {"d", "h", "g"}:
            raise ConfigError(f"dogstatsd.metric_type must be d, h or g, not {metric_type!r}")
        self.address = (host, port)
        self.prefix = prefix
        self.metric_type = metric_type
        self.metrics = frozenset(metrics)
        self.tag_keys = tuple(tag_keys)
        self.constant_tags = tuple(_TAG_UNSAFE.sub("_", tag) for tag in constant_tags)
        self.max_packet_bytes = max_packet_bytes
        self._names = {name: metric_name(prefix, name) for name in self.metrics}
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][0]
        except socket.gaierror as exc:
            raise ConfigError(f"dogstatsd.host {host!r} does not resolve: {exc}") from exc
        self._socket = socket.socket(family, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        self._lock = threading.Lock()
        self._lines = 0
        self._packets = 0
        self._errors = 0

    @classmethod
    def from_config(cls, config: DogStatsdConfig) -> DogStatsdForwarder:
        return cls(
            config.host, config.port, prefix=config.prefix, metric_type=config.metric_type,
            metrics=config.metrics, tag_keys=config.tag_keys, constant_tags=config.constant_tags,
            max_packet_bytes=config.max_packet_bytes,
        )

    def _tags(self, tags: Mapping[str, str]) -> str:
        found = [format_tag(key, tags[key]) for key in self.tag_keys if key in tags]
        found.extend(self.constant_tags)
        return f"|#{','.join(found)}" if found else ""

    def lines(self, points: Sequence[MetricPoint]) -> list[str]:
        """The DogStatsD lines for a batch (only the configured metrics)."""
        kind = self.metric_type
        if kind != "g":
            return [
                f"{self._names[p.name]}:{format_value(p.value)}|{kind}{self._tags(p.tags)}"
                for p in points if p.name in self.metrics
            ]
        sums: dict[tuple[str, str], list[float]] = {}
        for p in points:
            if p.name in self.metrics:
                entry = sums.setdefault((self._names[p.name], self._tags(p.tags)), [0.0, 0.0])
                entry[0] += p.value
                entry[1] += 1
        return [f"{name}:{format_value(total / count)}|g{tags}"
                for (name, tags), (total, count) in sums.items()]

    def packets(self, lines: Sequence[str]) -> list[bytes]:
        """Lines joined by newlines into datagrams of at most ``max_packet_bytes``."""
        packets: list[bytes] = []
        current: list[bytes] = []
        size = 0
        for line in lines:
            encoded = line.encode()
            if current and size + 1 + len(encoded) > self.max_packet_bytes:
                packets.append(b"\n".join(current))
                current, size = [], 0
            size += len(encoded) + (1 if current else 0)
            current.append(encoded)
        if current:
            packets.append(b"\n".join(current))
        return packets

    def forward(self, points: Sequence[MetricPoint]) -> int:
        """Send a batch; returns the number of lines sent. Never raises on network errors."""
        lines = self.lines(points)
        sent = 0
        for packet in self.packets(lines):
            try:
                self._socket.sendto(packet, self.address)
            except OSError as exc:
                with self._lock:
                    self._errors += 1
                    first = self._errors == 1
                if first:
                    logger.warning("DogStatsD agent at %s:%d: %s (counting further errors)",
                                   *self.address, exc)
                continue
            sent += packet.count(b"\n") + 1
            with self._lock:
                self._packets += 1
        with self._lock:
            self._lines += sent
        return sent

    @property
    def stats(self) -> DogStatsdStats:
        with self._lock:
            return DogStatsdStats(self._lines, self._packets, self._errors)

    def close(self) -> None:
        self._socket.close()


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
