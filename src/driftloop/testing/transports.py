"""An in-memory :class:`Transport` you can take down and bring back, for tests of delivery.

It keeps every published batch, in order; while ``down`` is set (or ``fail_next`` failures are
left) :meth:`MemoryTransport.publish` raises :class:`BackendUnavailableError` like a broker that
cannot be reached, and ``delay`` makes every publish slow like a stalled one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from driftloop.errors import BackendUnavailableError
from driftloop.insights.transports import Transport
from driftloop.metrics.points import MetricPoint


class MemoryTransport(Transport):
    """Records published batches; ``down``/``fail_next``/``delay`` simulate outages."""

    def __init__(self, *, delay: float = 0.0) -> None:
        self.batches: list[list[MetricPoint]] = []
        self.down = False
        self.fail_next = 0
        self.delay = delay
        self.failures = 0
        self.closed = False
        self._lock = threading.Lock()

    def publish(self, points: Sequence[MetricPoint]) -> None:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            if self.down or self.fail_next > 0:
                self.fail_next = max(0, self.fail_next - 1)
                self.failures += 1
                raise BackendUnavailableError("memory transport is down")
            self.batches.append(list(points))

    @property
    def points(self) -> list[MetricPoint]:
        with self._lock:
            return [point for batch in self.batches for point in batch]

    def close(self) -> None:
        self.closed = True
