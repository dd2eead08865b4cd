"""A soak test of a running driftloop server: measure its capacity, then hold twice that load.

:func:`run_soak` first measures what the server answers with ``capacity_clients`` clients in a
closed loop (each sends its next request when the last is answered), then sends requests at
``factor`` times that rate in an open loop (a request every ``1 / rate`` seconds, answered or
not, as real traffic arrives) for ``duration`` seconds, one text per request, and reports:

* every answer by status (a 503 must carry ``Retry-After``: the server's load shedding,
  ``serving.max_queue_delay``), and errors of the connection itself;
* the latency of answered requests (p50, p99);
* the server's resident memory (from ``/proc``) once warmed up (a quarter of the way in) and
  its highest value over the last quarter;
* how many predictions were answered, which the caller compares with the insight points the
  store holds (one ``model_confidence`` point per answered text: none may be lost).

The client is aiohttp (a dev dependency): httpx's async client, measured on 2 cores against
a trivial aiohttp server, sends 21 requests/s at 16 concurrent requests where aiohttp sends 578,
so with httpx the soak measured its own client. Loopback only: it is a test of driftloop, not
a load tester for other people's servers.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import aiohttp

CLIENT_SATURATED = "client saturated"
"""A request the open loop skipped: ``max_outstanding`` requests were already waiting."""

TEXTS = (
    "the sweater pilled after one wash",
    "a moving, beautifully shot film",
    "stale chips and a torn bag",
    "friendly staff, the soup was cold",
    "runs small, order a size up",
    "the battery died after a week",
    "a tense, well acted thriller",
    "great fit, true to size",
)


@dataclass
class Phase:
    """What one phase of the soak saw."""

    seconds: float = 0.0
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    """Requests that got no HTTP answer, by exception type."""
    shed_without_retry_after: int = 0
    latencies: list[float] = field(default_factory=list)
    """Seconds of each answered (200) request."""
    offered_seconds: float = 0.0
    """How long the open loop sent requests (``seconds`` adds the wait for the last answers)."""
    started: float = field(default_factory=time.perf_counter)
    answered_at: list[float] = field(default_factory=list)
    """When each answered (200) request was answered, in seconds since the phase started."""

    @property
    def answered(self) -> int:
        return self.statuses.get(200, 0)

    def answered_between(self, start: float, end: float) -> int:
        """Requests answered from ``start`` to ``end`` seconds into the phase."""
        return sum(start <= at < end for at in self.answered_at)

    def answered_per_window(self, window: float, span: float | None = None) -> list[int]:
        """Requests answered in each whole ``window`` seconds of the phase's first ``span``
        seconds (all of it by default)."""
        span = self.seconds if span is None else span
        return [
            self.answered_between(start * window, (start + 1) * window)
            for start in range(int(span // window))
        ]

    def latency_ms(self, quantile: float) -> float:
        if not self.latencies:
            return math.nan
        ordered = sorted(self.latencies)
        return 1000.0 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))]


@dataclass
class SoakResult:
    capacity: Phase
    load: Phase
    capacity_rps: float
    target_rps: float
    rss_warm_kib: int
    rss_peak_late_kib: int

    @property
    def answered(self) -> int:
        """Predictions answered over both phases (one text each)."""
        return self.capacity.answered + self.load.answered

    @property
    def offered_rps(self) -> float:
        """The rate the open loop really sent at (below the target when the client, on the
        same cores as the server, could not keep up)."""
        return self.load.sent / max(self.load.seconds, 1e-9)

    @property
    def rss_growth(self) -> float:
        return (self.rss_peak_late_kib - self.rss_warm_kib) / max(1, self.rss_warm_kib)

    def unexpected(self) -> dict[str, int]:
        """Answers other than 200 and shed 503s with Retry-After, and connection errors."""
        found: dict[str, int] = {}
        for phase in (self.capacity, self.load):
            for status, count in phase.statuses.items():
                if status not in (200, 503, 429):
                    found[f"HTTP {status}"] = found.get(f"HTTP {status}", 0) + count
            for error, count in phase.errors.items():
                if error != CLIENT_SATURATED:
                    found[error] = found.get(error, 0) + count
            if phase.shed_without_retry_after:
                found["503 without Retry-After"] = phase.shed_without_retry_after
        return found


def rss_kib(pid: int) -> int:
    """The resident memory of process ``pid`` (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


async def _request(client: aiohttp.ClientSession, path: str, text: str, phase: Phase) -> None:
    import aiohttp

    started = time.perf_counter()
    phase.sent += 1
    try:
        async with client.post(path, json={"texts": [text]}) as response:
            await response.read()
            status = response.status
            retry_after = "Retry-After" in response.headers
    except (aiohttp.ClientError, TimeoutError) as exc:
        phase.errors[type(exc).__name__] += 1
        return
    phase.statuses[status] += 1
    if status == 200:
        answered = time.perf_counter()
        phase.latencies.append(answered - started)
        phase.answered_at.append(answered - phase.started)
    elif status in (503, 429) and not retry_after:
        phase.shed_without_retry_after += 1


async def _closed_loop(
    client: aiohttp.ClientSession, path: str, clients: int, seconds: float
) -> Phase:
    phase = Phase()
    texts = itertools.cycle(TEXTS)
    deadline = time.perf_counter() + seconds

    async def one_client() -> None:
        while time.perf_counter() < deadline:
            await _request(client, path, next(texts), phase)

    phase.started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    phase.seconds = time.perf_counter() - phase.started
    return phase


async def _open_loop(
    client: aiohttp.ClientSession, path: str, rate: float, seconds: float, max_outstanding: int
) -> Phase:
    phase = Phase()
    texts = itertools.cycle(TEXTS)
    tasks: set[asyncio.Task[None]] = set()
    started = phase.started = time.perf_counter()
    for index in itertools.count():
        due = started + index / rate
        if due - started >= seconds:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) >= max_outstanding:  # the client itself is saturated: count, skip
            phase.errors[CLIENT_SATURATED] += 1
            continue
        task = asyncio.create_task(_request(client, path, next(texts), phase))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    phase.offered_seconds = time.perf_counter() - started
    await asyncio.gather(*tasks)
    phase.seconds = time.perf_counter() - started
    return phase


def run_soak(
    url: str,
    pid: int,
    headers: Mapping[str, str],
    model: str,
    *,
    duration: float,
    factor: float = 2.0,
    capacity_seconds: float = 5.0,
    capacity_clients: int = 16,
    max_outstanding: int = 512,
    timeout: float = 30.0,
    keepalive: float = 2.0,
) -> SoakResult:
    """Measure capacity, then hold ``factor`` times it for ``duration`` seconds (above).
    ``keepalive``: seconds an idle connection stays pooled, below the server's idle timeout."""
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the soak test runs on loopback only, not against {host!r}")
    path = f"/v1/models/{model}/predict"
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample_memory() -> None:
        while not stop.wait(0.5):
            samples.append((time.monotonic(), rss_kib(pid)))

    async def both() -> tuple[Phase, Phase, float]:
        import aiohttp

        # an idle pooled connection is dropped before the server's idle timeout
        # (serving.idle_timeout, 5 s by default) closes it: reusing one the server has just
        # closed fails the request (ServerDisconnectedError) when a busy client has not yet
        # read the server's FIN, which a soak on two cores did 123 times in one run
        connector = aiohttp.TCPConnector(limit=max_outstanding, keepalive_timeout=keepalive)
        async with aiohttp.ClientSession(
            url,
            headers=dict(headers),
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as client:
            capacity = await _closed_loop(client, path, capacity_clients, capacity_seconds)
            rps = capacity.answered / capacity.seconds
            load_started = time.monotonic()
            sampler.start()
            load = await _open_loop(client, path, factor * rps, duration, max_outstanding)
            return capacity, load, load_started

    sampler = threading.Thread(target=sample_memory, name="soak-rss", daemon=True)
    try:
        capacity, load, load_started = asyncio.run(both())
    finally:
        stop.set()
        if sampler.is_alive():
            sampler.join(5)
    rss_warm, rss_late = _memory(samples, load_started, duration)
    capacity_rps = capacity.answered / capacity.seconds
    return SoakResult(capacity, load, capacity_rps, factor * capacity_rps, rss_warm, rss_late)


def _memory(
    samples: Sequence[tuple[float, int]], started: float, duration: float
) -> tuple[int, int]:
    """RSS once warmed up (the first sample a quarter of the way in) and the highest RSS of the
    last quarter."""
    if not samples:
        return 0, 0
    warm_at = started + duration / 4
    late_from = started + duration * 3 / 4
    warm = next((kib for at, kib in samples if at >= warm_at), samples[-1][1])
    late = max((kib for at, kib in samples if at >= late_from), default=samples[-1][1])
    return warm, late
