"""Load shedding when the server itself is the bottleneck, not the model.

A quick model (the sklearn one answers a text in about 1 ms) is never the bottleneck: parsing
requests, encoding answers and reporting insights on the event loop are. Under more requests
than the server can take, they wait in the loop among hundreds of others, and the
micro-batcher's queue (``serving.max_queue_delay`` for a slow model) never sees them.
:class:`LoadSheddingMiddleware` watches how long the oldest predict request in flight has
been waiting (the sojourn time CoDel watches in a network queue), plus how late the loop runs
a timer (:class:`LoopLagMonitor`: the wait before a request is even read). While that exceeds
``serving.max_queue_delay`` with at least :data:`MIN_IN_FLIGHT` requests in flight, it answers
new predict requests 503 at once, with ``Retry-After`` (an answer that costs the loop a fraction
of a prediction); the requests in flight finish, the oldest one gets younger and requests are
admitted again, so answered requests keep a bounded latency. A burst that the server takes in
its stride (many requests, all young) and one slow request alone are never shed; a slow
model's own queue is the micro-batcher's business. Other routes (probes, metrics, admin) are
always served.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time

from starlette.types import ASGIApp, Receive, Scope, Send

from driftloop.errors import OverloadedError
from driftloop.serving.errors import error_json

SAMPLE_SECONDS = 0.05
"""How often the monitor's timer is due."""
MIN_IN_FLIGHT = 8
"""Never shed with fewer predict requests in flight than this (one slow request is no queue)."""


class LoopLagMonitor:
    """The event loop's lag: how late a timer due every :data:`SAMPLE_SECONDS` runs (the
    recent maximum, decaying)."""

    def __init__(self) -> None:
        self.lag = 0.0
        self._task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="loop-lag-monitor"
            )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + SAMPLE_SECONDS
            await asyncio.sleep(SAMPLE_SECONDS)
            late = max(0.0, loop.time() - due)
            # a late timer is news at once; on a quiet loop the figure falls within ~0.5 s
            self.lag = late if late > self.lag else 0.8 * self.lag + 0.2 * late

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


class LoadSheddingMiddleware:
    """Answers ``POST .../predict`` 503 with ``Retry-After`` while a request would wait more
    than ``max_delay`` seconds (0: never)."""

    def __init__(
        self, app: ASGIApp, *, max_delay: float, monitor: LoopLagMonitor | None = None
    ) -> None:
        self.app = app
        self.max_delay = max_delay
        self.monitor = monitor or LoopLagMonitor()
        self.shed = 0
        self._started: dict[int, float] = {}
        """When each predict request in flight started, oldest first (insertion order)."""
        self._ids = itertools.count()

    @property
    def in_flight(self) -> int:
        return len(self._started)

    def expected_wait(self, now: float) -> float:
        """What a predict request read now would wait: the loop's lag plus how long the
        oldest request in flight has waited, when enough are in flight to be a queue; else 0.
        A lag with few requests in flight is a past stall (a garbage collection, a blocked
        host), not a queue: the next request is read at once, and shedding it would fail a
        lone client for nothing."""
        if len(self._started) < MIN_IN_FLIGHT:
            return 0.0
        return self.monitor.lag + now - next(iter(self._started.values()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.max_delay:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST" or not str(scope["path"]).endswith("/predict"):
            await self.app(scope, receive, send)
            return
        self.monitor.ensure_running()
        wait = self.expected_wait(time.monotonic())
        if wait > self.max_delay:
            self.shed += 1
            retry_after = max(1, math.ceil(min(wait, 60.0)))
            body = error_json(
                OverloadedError.__name__,
                f"the server is overloaded: a request would wait about {min(wait, 60.0):.1f}s "
                f"for its turn (serving.max_queue_delay {self.max_delay:g}s); retry later",
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", str(retry_after).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        request = next(self._ids)
        self._started[request] = time.monotonic()
        try:
            await self.app(scope, receive, send)
        finally:
            del self._started[request]
