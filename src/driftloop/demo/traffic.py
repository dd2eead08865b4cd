"""The demo's traffic: concurrent clients sending real HTTP predict requests.

Each client draws labeled rows from the current pool (known subtopics, then drifted ones), so
accuracy per served version can be measured honestly on the traffic itself.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import httpx
import pandas as pd

SHED_RETRIES = 5
"""How often a shed prediction is sent again before it counts as failed."""


@dataclass
class TrafficStats:
    requests: int = 0
    texts: int = 0
    failed: int = 0
    shed: int = 0
    """Answers the server shed with Retry-After (sent again; not failures)."""
    failures: list[str] = field(default_factory=list)
    versions: Counter[str] = field(default_factory=Counter)
    correct: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(phase, version) → correctly classified texts."""
    scored: Counter[tuple[str, str]] = field(default_factory=Counter)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=5_000))

    def requests_per_second(self, now: float, span: float = 5.0) -> float:
        recent = tuple(self.recent)  # one copy (atomic): the clients append as this counts
        return sum(1 for t in recent if t >= now - span) / span

    def accuracy(self, phase: str, version: str) -> float | None:
        scored = self.scored[(phase, version)]
        return None if scored == 0 else self.correct[(phase, version)] / scored


def _inputs(column: pd.Series[Any]) -> list[Any]:
    """A pool column's inputs as a request sends them: texts as strings, records as dicts."""
    values = column.tolist()
    return values if values and isinstance(values[0], dict) else [str(v) for v in values]


class TrafficGenerator:
    """``clients`` concurrent clients, each sending ``batch`` texts per request."""

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str,
        *,
        clients: int = 4,
        batch: int = 8,
        pause: float = 0.03,
        text_column: str = "text",
        label_column: str = "label",
        input_key: str = "texts",
        seed: int = 11,
    ) -> None:
        """``text_column`` holds each row's input (a text, or a record as a ``dict``), sent as
        the request body's ``input_key`` (``texts``, or ``records``)."""
        self.endpoint = f"{url}/v1/models/{model}/predict"
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.clients = clients
        self.batch = batch
        self.pause = pause
        self.text_column = text_column
        self.label_column = label_column
        self.input_key = input_key
        self.random = random.Random(seed)
        self.stats = TrafficStats()
        self.phase = "idle"
        self._pool: pd.DataFrame | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def set_phase(self, phase: str, pool: pd.DataFrame) -> None:
        with self._lock:
            self.phase = phase
            self._pool = pool.reset_index(drop=True)

    def _draw(self) -> tuple[str, list[Any], list[str]]:
        with self._lock:
            assert self._pool is not None
            rows = [self.random.randrange(len(self._pool)) for _ in range(self.batch)]
            sample = self._pool.iloc[rows]
            return (
                self.phase,
                _inputs(sample[self.text_column]),
                sample[self.label_column].astype(str).tolist(),
            )

    async def _post(self, client: httpx.AsyncClient, texts: list[Any]) -> httpx.Response:
        """One prediction, as a well-behaved client sends it: a request the server sheds
        (503, or 429, with ``Retry-After``: documented backpressure) is sent again after the
        wait it asks for (at most 1 s, up to ``SHED_RETRIES`` times); only an answer that stays
        an error counts as a failed request."""
        for _ in range(SHED_RETRIES):
            response = await client.post(
                self.endpoint, json={self.input_key: texts}, headers=self.headers
            )
            wait = response.headers.get("retry-after")
            if response.status_code not in (429, 503) or wait is None:
                return response
            with self._lock:
                self.stats.shed += 1
            await asyncio.sleep(min(1.0, float(wait)))
        return response

    async def _client(self, client: httpx.AsyncClient) -> None:
        while not self._stop.is_set():
            phase, texts, labels = self._draw()
            try:
                response = await self._post(client, texts)
            except httpx.HTTPError as exc:
                self._record_failure(f"{type(exc).__name__}: {exc}")
            else:
                if response.status_code != 200:
                    self._record_failure(f"HTTP {response.status_code}: {response.text[:200]}")
                else:
                    body = response.json()
                    version = str(body["version"])
                    predicted = [p["class"] for p in body["predictions"]]
                    with self._lock:
                        stats = self.stats
                        stats.requests += 1
                        stats.texts += len(texts)
                        stats.versions[version] += 1
                        stats.recent.append(time.time())
                        stats.scored[(phase, version)] += len(texts)
                        stats.correct[(phase, version)] += sum(
                            p == t for p, t in zip(predicted, labels, strict=True)
                        )
            await asyncio.sleep(self.pause)

    def _record_failure(self, reason: str) -> None:
        with self._lock:
            self.stats.failed += 1
            if len(self.stats.failures) < 20:
                self.stats.failures.append(reason)

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.clients)
        async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
            await asyncio.gather(*(self._client(client) for _ in range(self.clients)))

    def start(self) -> None:
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._run()), name="demo-traffic", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
