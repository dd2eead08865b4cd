"""The insights SDK: ``report_insights({"model_confidence": 0.93}, tags={"model": "m"})``.

:meth:`InsightsClient.report` is built for the request path: it checks its input, stamps the
time and appends one tuple to an in-memory queue (a ``deque``; appends are atomic), nothing more.
A background thread wakes every ``flush_interval`` (or as soon as ``batch_size`` reports wait),
turns the queued reports into a :class:`PointBatch` (columns, no object per point), each point
with a unique ``point_id`` (so downstream writes are idempotent), and publishes the batches to the
:class:`Transport`.

Nothing is dropped:

* when the queue is full, the report goes to the on-disk :class:`Outbox` instead (buffered
  append; fsync'd by the flush thread in batches);
* when the transport raises (``BackendUnavailableError`` when down), the batch is spooled to the
  outbox and the client backs off; while the outbox holds anything, new batches queue up
  behind it, and the outbox is replayed in write order once a publish succeeds again.

Counters (:class:`InsightsStats`): ``reported`` points accepted, ``published`` points delivered
(replayed ones included), ``spooled`` points written to the outbox, ``replayed`` points
delivered from it, ``dropped`` points lost (only if the outbox itself cannot be written).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from driftloop.background import BackgroundLoop
from driftloop.errors import ConfigError, ConflictError, InvalidInputError
from driftloop.insights.outbox import Outbox
from driftloop.insights.transports import Transport
from driftloop.metrics.points import MetricPoint, PointBatch

if TYPE_CHECKING:
    from driftloop.config import Config, InsightsConfig

logger = logging.getLogger(__name__)

_Report = tuple[tuple[tuple[str, float], ...], Mapping[str, str], float]
_NO_TAGS: Mapping[str, str] = {}
_SHARED_TAGS_LIMIT = 10_000


@dataclass(frozen=True)
class InsightsStats:
    """What the client has done with the points reported to it."""

    reported: int
    published: int
    spooled: int
    replayed: int
    dropped: int
    queue_depth: int
    """Reports waiting in memory."""
    outbox_pending: int
    """Points waiting in the on-disk outbox."""
    transport_healthy: bool


class InsightsClient:
    """Non-blocking, batching reporter of insight points to a :class:`Transport`."""

    def __init__(
        self,
        transport: Transport,
        *,
        outbox: Outbox | Path | str,
        queue_size: int = 100_000,
        batch_size: int = 2_000,
        flush_interval: float = 0.2,
        max_retry_interval: float = 5.0,
        owns_transport: bool = False,
        start: bool = True,
    ) -> None:
        if queue_size < 1 or batch_size < 1 or flush_interval <= 0:
            raise ConfigError(
                "insights: queue_size and batch_size must be >= 1, flush_interval > 0"
            )
        self.transport = transport
        self.outbox = outbox if isinstance(outbox, Outbox) else Outbox.open_slot(outbox)
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_retry_interval = max(max_retry_interval, flush_interval)
        self._owns_transport = owns_transport
        self._queue: deque[_Report] = deque()
        self._flusher = BackgroundLoop(
            lambda: self._flush_once(force=False),
            flush_interval,
            name="driftloop-insights",
            logger=logger,
            failure="insights flush failed; retrying",
            wait_first=True,
        )
        self._flush_lock = threading.Lock()
        self._counter_lock = threading.Lock()
        self._id_prefix = uuid.uuid4().hex[:16] + "-"
        self._ids = itertools.count(1)
        self._shared_tags: dict[tuple[tuple[str, str], ...], Mapping[str, str]] = {}
        self._closed = False
        self._reported = 0
        self._published = 0
        self._spooled = 0
        self._replayed = 0
        self._dropped = 0
        self._healthy = True
        self._retry_at = 0.0
        self._retry_delay = flush_interval
        if start:
            self.start()

    @classmethod
    def from_config(cls, config: Config, *, transport: Transport | None = None) -> InsightsClient:
        """A client for ``config.insights`` publishing to ``transport`` (default: the one
        ``config.transport`` names, owned and closed by the client)."""
        from driftloop.insights.transports import open_transport

        settings: InsightsConfig = config.insights
        owns = transport is None
        return cls(
            transport if transport is not None else open_transport(config),
            outbox=config.path(settings.outbox),
            queue_size=settings.queue_size,
            batch_size=settings.batch_size,
            flush_interval=settings.flush_interval,
            owns_transport=owns,
        )

    # --- the request path -----------------------------------------------------------------

    def report(
        self,
        values: Mapping[str, float],
        tags: Mapping[str, str] | None = None,
        *,
        timestamp: float | None = None,
    ) -> None:
        """Queue one observation of one or more metrics; never blocks on I/O."""
        if self._closed:
            raise ConflictError("this insights client is closed")
        items = tuple(values.items())
        for name, value in items:
            kind = type(value)
            if (
                (kind is not float and kind is not int)
                or value - value != 0  # NaN, inf
                or type(name) is not str
            ):
                _check_value(name, value)
        if tags:
            try:
                shared = self._shared_tags.get(tuple(tags.items()))
            except (AttributeError, TypeError):  # not a mapping, or unhashable values
                shared = None
            tags = self._share_tags(tags) if shared is None else shared
        else:
            tags = _NO_TAGS
        record = (items, tags, time.time() if timestamp is None else timestamp)
        queue = self._queue
        depth = len(queue)
        if depth >= self.queue_size:
            self._overflow(record)
            return
        queue.append(record)
        if depth + 1 == self.batch_size:
            self._flusher.wake()

    def _share_tags(self, tags: Mapping[str, str]) -> Mapping[str, str]:
        """A checked copy of ``tags``, shared by every report with the same tags (in the same
        order) from then on: reports skip the copy and the check, and the store resolves each
        distinct mapping of a batch once instead of once per point."""
        try:
            copy = dict(tags)
        except (TypeError, ValueError):
            raise InvalidInputError(f"insight tags {tags!r}: tags map str to str") from None
        for key, tag in copy.items():
            if type(tag) is not str or type(key) is not str:
                raise InvalidInputError(f"insight tag {key!r}={tag!r}: tags map str to str")
        if len(self._shared_tags) >= _SHARED_TAGS_LIMIT:
            self._shared_tags.clear()  # high-cardinality tags: start over rather than grow
        self._shared_tags[tuple(copy.items())] = copy
        return copy

    def _overflow(self, record: _Report) -> None:
        points = self._points([record])
        try:
            self.outbox.append(points, sync=False)
        except OSError:
            logger.exception(
                "insights outbox %s cannot be written; %d points lost",
                self.outbox.directory,
                len(points),
            )
            with self._counter_lock:
                self._reported += len(points)
                self._dropped += len(points)
            return
        with self._counter_lock:
            self._reported += len(points)
            self._spooled += len(points)

    # --- the flush thread -----------------------------------------------------------------

    def start(self) -> None:
        if not self._closed:
            self._flusher.start()

    def flush(self) -> bool:
        """Publish everything queued now, retrying the transport even while backing off;
        True when nothing is left (in memory or in the outbox)."""
        self._flush_once(force=True)
        return not self._queue and self.outbox.pending == 0

    def _flush_once(self, *, force: bool) -> None:
        with self._flush_lock:
            while True:
                records = self._take(self.batch_size)
                if records:
                    points = self._points(records)
                    with self._counter_lock:
                        self._reported += len(points)
                    if self.outbox.pending or not self._may_try(force):
                        self._spool(points)
                    elif self._publish(points):
                        with self._counter_lock:
                            self._published += len(points)
                    else:
                        self._spool(points)
                self._replay(force)
                if len(records) < self.batch_size:
                    break
            self.outbox.sync()

    def _take(self, limit: int) -> list[_Report]:
        queue = self._queue
        taken: list[_Report] = []
        while queue and len(taken) < limit:
            taken.append(queue.popleft())
        return taken

    def _points(self, records: Sequence[_Report]) -> PointBatch:
        names: list[str] = []
        values: list[float] = []
        stamps: list[float] = []
        tags_of: list[Mapping[str, str]] = []
        add_name, add_value, add_stamp, add_tags = (
            names.append,
            values.append,
            stamps.append,
            tags_of.append,
        )
        for items, tags, timestamp in records:
            for name, value in items:
                add_name(name)
                add_value(value)
                add_stamp(timestamp)
                add_tags(tags)
        point_ids: list[str | None] = [
            f"{self._id_prefix}{number:x}" for number in itertools.islice(self._ids, len(names))
        ]
        return PointBatch(names, values, stamps, tags_of, point_ids)

    def _spool(self, points: PointBatch) -> None:
        try:
            self.outbox.append(points, sync=False)
        except OSError:
            logger.exception(
                "insights outbox %s cannot be written; %d points lost",
                self.outbox.directory,
                len(points),
            )
            with self._counter_lock:
                self._dropped += len(points)
            return
        with self._counter_lock:
            self._spooled += len(points)

    def _replay(self, force: bool) -> None:
        while self.outbox.pending and self._may_try(force):
            self.outbox.sync()
            batch = self.outbox.read(self.batch_size)
            if batch is None:
                return
            if batch.points and not self._publish(batch.points):
                return
            self.outbox.commit(batch)
            with self._counter_lock:
                self._replayed += len(batch.points)
                self._published += len(batch.points)

    def _may_try(self, force: bool) -> bool:
        return force or self._healthy or time.monotonic() >= self._retry_at

    def _publish(self, points: Sequence[MetricPoint]) -> bool:
        try:
            self.transport.publish(points)
        except Exception as exc:
            if self._healthy:
                logger.warning(
                    "insights transport failed (%s); spooling to %s", exc, self.outbox.directory
                )
            self._healthy = False
            self._retry_at = time.monotonic() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, self.max_retry_interval)
            return False
        if not self._healthy:
            logger.info("insights transport is back; replaying the outbox")
        self._healthy = True
        self._retry_delay = self.flush_interval
        return True

    # --- state ----------------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def stats(self) -> InsightsStats:
        with self._counter_lock:
            return InsightsStats(
                reported=self._reported,
                published=self._published,
                spooled=self._spooled,
                replayed=self._replayed,
                dropped=self._dropped,
                queue_depth=len(self._queue),
                outbox_pending=self.outbox.pending,
                transport_healthy=self._healthy,
            )

    def close(self, *, flush: bool = True) -> None:
        """Stop the flush thread; publish (or spool) what is queued; close the outbox."""
        if self._closed:
            return
        self._closed = True
        self._flusher.stop()
        if flush:
            try:
                self._flush_once(force=True)
            except Exception:
                logger.exception("final insights flush failed")
        self.outbox.close()
        if self._owns_transport:
            self.transport.close()

    def __enter__(self) -> InsightsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_value(name: object, value: object) -> None:
    if type(name) is not str:
        raise InvalidInputError(f"insight name {name!r} is not a string")
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            number = float(value)  # type: ignore[arg-type]  # numpy scalars and Real types
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"insight {name!r}: expected a number, got {type(value).__name__}"
            ) from None
        if isinstance(value, str | bytes):
            raise InvalidInputError(f"insight {name!r}: expected a number, got a string")
    else:
        number = float(value)
    if not math.isfinite(number):
        raise InvalidInputError(f"insight {name!r}: {number} is not a finite number")


# --- the process-wide default client -----------------------------------------------------

_default_client: InsightsClient | None = None
_default_lock = threading.Lock()


def configure_insights(
    config: Config | None = None,
    *,
    client: InsightsClient | None = None,
    transport: Transport | None = None,
) -> InsightsClient:
    """Set the client :func:`report_insights` uses: ``client`` as given, or one built from
    ``config`` (default: ``driftloop.yaml`` found from the current directory) and ``transport``
    (default: the one ``config.transport`` names). A previous default is closed."""
    global _default_client
    if client is None:
        if config is None:
            from driftloop.config import load_config

            config = load_config()
        client = InsightsClient.from_config(config, transport=transport)
    with _default_lock:
        previous, _default_client = _default_client, client
    if previous is not None and previous is not client:
        previous.close()
    return client


def get_insights_client() -> InsightsClient:
    """The process-wide client, configured from ``driftloop.yaml`` on first use."""
    global _default_client
    client = _default_client
    if client is not None:
        return client
    with _default_lock:
        if _default_client is None:
            from driftloop.config import load_config

            _default_client = InsightsClient.from_config(load_config())
        return _default_client


def default_insights_client() -> InsightsClient | None:
    """The process-wide client if one is configured, without creating one."""
    return _default_client


def shutdown_insights() -> None:
    """Flush and close the process-wide client (also run at interpreter exit)."""
    global _default_client
    with _default_lock:
        client, _default_client = _default_client, None
    if client is not None:
        client.close()


def report_insights(
    values: Mapping[str, float],
    tags: Mapping[str, str] | None = None,
    *,
    timestamp: float | None = None,
) -> None:
    """Report metrics from anywhere (``report_insights({"model_confidence": 0.93},
    tags={"model": "reviews"})``) through the process-wide client; never blocks."""
    client = _default_client
    if client is None:
        client = get_insights_client()
    client.report(values, tags, timestamp=timestamp)


atexit.register(shutdown_insights)
