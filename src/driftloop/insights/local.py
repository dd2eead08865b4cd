"""``local://``: in-process delivery of insight batches to a metric store, then to listeners.

Listeners (the monitor engine's streaming detectors, say) are called with each batch after the
store has accepted it, in the SDK's flush thread; a failing listener is logged and the others
still run, so one bad consumer never makes the SDK spool or repeat a batch.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from driftloop.errors import BackendUnavailableError, ConfigError
from driftloop.insights.transports import Transport
from driftloop.metrics.points import MetricPoint, MetricStore

if TYPE_CHECKING:
    from driftloop.config import Config

logger = logging.getLogger(__name__)

PointListener = Callable[[Sequence[MetricPoint]], None]


class LocalTransport(Transport):
    """Writes batches into a :class:`MetricStore` and hands them to registered listeners."""

    def __init__(self, store: MetricStore) -> None:
        self.store = store
        self._listeners: list[PointListener] = []
        self._lock = threading.Lock()

    def add_listener(self, listener: PointListener) -> None:
        """Call ``listener(points)`` with every batch once it is stored."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: PointListener) -> None:
        with self._lock:
            self._listeners.remove(listener)

    def publish(self, points: Sequence[MetricPoint]) -> None:
        if not points:
            return
        try:
            self.store.write(points)
        except BackendUnavailableError:
            raise
        except OSError as exc:
            raise BackendUnavailableError(f"local metric store is unavailable: {exc}") from exc
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(points)
            except Exception:
                logger.exception(
                    "insights listener %r failed on a batch of %d points", listener, len(points)
                )


def create_local_transport(
    url: str, *, config: Config | None = None, store: MetricStore | None = None
) -> LocalTransport:
    """Factory for ``local://`` URLs (registered in :data:`TRANSPORTS`)."""
    if url.rstrip("/") != "local:":
        raise ConfigError(f"transport {url!r}: a local transport takes no host or path: local://")
    if store is None:
        if config is None:
            raise ConfigError("a local:// transport needs a metric store or a config naming one")
        store = _sql_store(config)
    return LocalTransport(store)


def _sql_store(config: Config) -> MetricStore:
    from driftloop.database import open_database
    from driftloop.metrics.sql import SqlMetricStore

    database = open_database(config.store, base_dir=config.base_dir)
    return SqlMetricStore.from_config(database, config.metrics)
