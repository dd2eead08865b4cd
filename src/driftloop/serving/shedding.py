"""Load shedding when the server itself is the bottleneck: the event loop's lag.

A quick model (the sklearn one answers a text in about 1 ms) is never the bottleneck: parsing
requests, encoding answers and reporting insights on the event loop are. Under more requests
than the loop can take, they wait before their handler even runs, and the micro-batcher's queue
(``serving.max_queue_delay`` for a slow model) never sees them. :class:`LoopLagMonitor` measures
how late the loop runs a timer: that lag is what a request just read waits for its turn. While
it exceeds ``serving.max_queue_delay``, :class:`LoadSheddingMiddleware` answers predict requests
503 at once, with ``Retry-After`` (an answer that costs the loop a fraction of a prediction), so
the lag falls and answered requests keep a bounded latency. Other routes (probes, metrics,
admin) are always served.
"""

from __future__ import annotations

import asyncio
import json
import math

from starlette.types import ASGIApp, Receive, Scope, Send

SAMPLE_SECONDS = 0.05
"""How often the monitor's timer is due."""


class LoopLagMonitor:
    """The event loop's lag: how late a timer due every :data:`SAMPLE_SECONDS` runs (the
    recent maximum, decaying)."""

    def __init__(self) -> None:
        self.lag = 0.0
        self._task: asyncio.Task[None] | None = None

    def ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="loop-lag-monitor")

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
    """Answers ``POST .../predict`` 503 with ``Retry-After`` while the loop lags more than
    ``max_delay`` seconds (0: never)."""

    def __init__(self, app: ASGIApp, *, max_delay: float,
                 monitor: LoopLagMonitor | None = None) -> None:
        self.app = app
        self.max_delay = max_delay
        self.monitor = monitor or LoopLagMonitor()
        self.shed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.max_delay:
            await self.app(scope, receive, send)
            return
        self.monitor.ensure_running()
        lag = self.monitor.lag
        if (lag > self.max_delay and scope["method"] == "POST"
                and str(scope["path"]).endswith("/predict")):
            self.shed += 1
            retry_after = max(1, math.ceil(lag))
            body = json.dumps({"error": {
                "type": "OverloadedError",
                "message": f"the server is overloaded: requests wait {lag:.1f}s for their turn "
                           f"(serving.max_queue_delay {self.max_delay:g}s); retry later",
            }}).encode()
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(retry_after).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
