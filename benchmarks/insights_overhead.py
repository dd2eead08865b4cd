"""How much ``report_insights`` costs on the request path (target: median under 2 µs).

Each case times single calls with ``perf_counter_ns`` (minus the timer's own cost, measured
the same way on an empty call) while the SDK's flush thread runs and publishes to an in-memory
transport, as in a server; a second figure divides the wall time of a tight loop by the calls.

    .venv/bin/python benchmarks/insights_overhead.py [--calls 200000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from driftloop.insights import (
    InsightsClient,
    configure_insights,
    report_insights,
    shutdown_insights,
)
from driftloop.insights.transports import Transport
from driftloop.metrics.points import MetricPoint
from driftloop.testing.transports import MemoryTransport


class CountingTransport(Transport):
    """Counts what it is handed, so the flush figure is the SDK's own work."""

    def __init__(self) -> None:
        self.points = 0

    def publish(self, points: Sequence[MetricPoint]) -> None:
        self.points += len(points)


@dataclass(frozen=True)
class Result:
    case: str
    median_us: float
    p99_us: float
    loop_us: float


def measure(case: str, call: Callable[[], None], calls: int, timer_ns: float) -> Result:
    samples: list[int] = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        start = clock()
        call()
        samples.append(clock() - start)
    samples.sort()
    started = time.perf_counter()
    for _ in range(calls):
        call()
    loop = (time.perf_counter() - started) / calls * 1e6
    median = max(statistics.median(samples) - timer_ns, 0.0) / 1000
    p99 = max(samples[int(len(samples) * 0.99)] - timer_ns, 0.0) / 1000
    return Result(case, median, p99, loop)


def timer_overhead(calls: int) -> float:
    def nothing() -> None:
        return None

    clock = time.perf_counter_ns
    samples = []
    for _ in range(calls):
        start = clock()
        nothing()
        samples.append(clock() - start)
    return float(statistics.median(samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    calls: int = args.calls

    with tempfile.TemporaryDirectory(prefix="driftloop-bench-") as directory:
        transport = MemoryTransport()
        client = InsightsClient(
            transport,
            outbox=Path(directory) / "outbox",
            queue_size=10 * calls,
            batch_size=2_000,
            flush_interval=0.2,
        )
        configure_insights(client=client)
        server_values = {"model_confidence": 0.93, "text_length": 57, "latency_ms": 3.2}
        server_tags = {"model": "review-classifier", "version": "3", "class": "Food - Positive"}
        timer = timer_overhead(calls)
        results = [
            measure(
                "report_insights, 1 value, no tags",
                lambda: report_insights({"model_confidence": 0.93}),
                calls,
                timer,
            ),
            measure(
                "report_insights, 1 value, 1 tag",
                lambda: report_insights({"model_confidence": 0.93}, {"model": "review-classifier"}),
                calls,
                timer,
            ),
            measure(
                "report_insights, server's 3 values + 3 tags",
                lambda: report_insights(server_values, server_tags),
                calls,
                timer,
            ),
            measure(
                "InsightsClient.report, 3 values + 3 tags",
                lambda: client.report(server_values, server_tags),
                calls,
                timer,
            ),
        ]
        client.flush()
        published = client.stats.published
        shutdown_insights()

    with tempfile.TemporaryDirectory(prefix="driftloop-bench-") as directory:
        offline = InsightsClient(
            CountingTransport(),
            outbox=Path(directory) / "outbox",
            queue_size=10 * calls,
            batch_size=2_000,
            start=False,
        )
        for _ in range(calls):
            offline.report(server_values, server_tags)
        started = time.perf_counter()
        offline.flush()
        flush_us = (time.perf_counter() - started) / (calls * len(server_values)) * 1e6
        offline.close()

    with tempfile.TemporaryDirectory(prefix="driftloop-bench-") as directory:
        overflow = InsightsClient(
            MemoryTransport(), outbox=Path(directory) / "outbox", queue_size=1, start=False
        )
        overflow.report({"fill": 1.0})
        results.append(
            measure(
                "queue full: spooled to the outbox (slow path)",
                lambda: overflow.report(server_values, server_tags),
                min(calls, 20_000),
                timer,
            )
        )
        overflow.close(flush=False)

    width = max(len(r.case) for r in results)
    print(f"{'case':<{width}}  {'median µs':>10}  {'p99 µs':>8}  {'loop µs/call':>12}")
    print("-" * (width + 38))
    for r in results:
        print(f"{r.case:<{width}}  {r.median_us:>10.2f}  {r.p99_us:>8.2f}  {r.loop_us:>12.2f}")
    print(
        f"\n{calls} calls per case; {published} points published by the flush thread; "
        f"timer overhead {timer / 1000:.3f} µs subtracted from median/p99"
    )
    print(
        f"flush thread (off the request path): {flush_us:.2f} µs per point batched into "
        "columns with its id and handed to a transport"
    )
    print("loop µs/call: wall time of a tight loop per call, sharing the GIL with the flush thread")


if __name__ == "__main__":
    main()
