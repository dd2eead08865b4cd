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
from driftloop.predictors.schema import Feature, InputSchema
from driftloop.serving.model_io import sampled_features
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
    mean_us: float = 0.0
    """The mean of the timed calls (what a sampled feature adds shows in the mean, not in the
    median, when fewer than half the calls sample)."""


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
    mean = max(statistics.fmean(samples) - timer_ns, 0.0) / 1000
    return Result(case, median, p99, loop, mean)


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


FEATURES = 20
"""Features of the record model whose per-feature insights are measured (#19 part 9)."""
FEATURE_RATES = (0.0, 0.25, 1.0)
"""Off, ``serving.feature_insights_rate``'s default, every record."""


def feature_cases(client: InsightsClient, calls: int, timer: float) -> list[Result]:
    """A record model's insights per request as the server reports them (model_io: the
    server's values plus :func:`sampled_features` of the record, one ``report`` call), with
    feature insights off, at the default rate and at every record; 12 numeric features and 8
    categories."""
    schema = InputSchema.record(
        *(Feature.number(f"n{i}") for i in range(12)),
        *(Feature.category(f"c{i}", ("a", "b", "c", "d")) for i in range(FEATURES - 12)),
    )
    record: dict[str, object] = {f"n{i}": 1.5 * i for i in range(12)}
    record.update({f"c{i}": "abcd"[i % 4] for i in range(FEATURES - 12)})
    values = {"model_confidence": 0.93, "latency_ms": 3.2}
    tags = {"model": "churn", "version": "3", "class": "stay"}

    def request(rate: float) -> Callable[[], None]:
        return lambda: client.report({**values, **sampled_features(schema, record, rate)}, tags)

    return [
        measure(
            f"record of {FEATURES} features, feature insights at rate {rate:g}",
            request(rate),
            calls,
            timer,
        )
        for rate in FEATURE_RATES
    ]


SERVER_VALUES = {"model_confidence": 0.93, "text_length": 57, "latency_ms": 3.2}
SERVER_TAGS = {"model": "review-classifier", "version": "3", "class": "Food - Positive"}
"""What the server reports per prediction."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    calls: int = args.calls
    timer = timer_overhead(calls)
    results, published = request_path_cases(calls, timer)
    flush_us = flush_cost(calls)
    results.append(overflow_case(calls, timer))
    print_results(results, calls, published, timer, flush_us)


def request_path_cases(calls: int, timer: float) -> tuple[list[Result], int]:
    """``report_insights`` and ``InsightsClient.report`` with a flush thread publishing to
    memory, with and without feature insights; and the points the thread published."""
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
                lambda: report_insights(SERVER_VALUES, SERVER_TAGS),
                calls,
                timer,
            ),
            measure(
                "InsightsClient.report, 3 values + 3 tags",
                lambda: client.report(SERVER_VALUES, SERVER_TAGS),
                calls,
                timer,
            ),
        ]
        results.extend(feature_cases(client, calls, timer))
        client.flush()
        published = client.stats.published
        shutdown_insights()
    return results, published


def flush_cost(calls: int) -> float:
    """µs per point of the flush (off the request path): ``calls`` reports queued, then
    flushed to a transport that only counts."""
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-") as directory:
        offline = InsightsClient(
            CountingTransport(),
            outbox=Path(directory) / "outbox",
            queue_size=10 * calls,
            batch_size=2_000,
            start=False,
        )
        for _ in range(calls):
            offline.report(SERVER_VALUES, SERVER_TAGS)
        started = time.perf_counter()
        offline.flush()
        flush_us = (time.perf_counter() - started) / (calls * len(SERVER_VALUES)) * 1e6
        offline.close()
    return flush_us


def overflow_case(calls: int, timer: float) -> Result:
    """A report when the queue is full: spooled to the outbox."""
    with tempfile.TemporaryDirectory(prefix="driftloop-bench-") as directory:
        overflow = InsightsClient(
            MemoryTransport(), outbox=Path(directory) / "outbox", queue_size=1, start=False
        )
        overflow.report({"fill": 1.0})
        result = measure(
            "queue full: spooled to the outbox (slow path)",
            lambda: overflow.report(SERVER_VALUES, SERVER_TAGS),
            min(calls, 20_000),
            timer,
        )
        overflow.close(flush=False)
    return result


def print_results(
    results: list[Result], calls: int, published: int, timer: float, flush_us: float
) -> None:
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
    off, *sampled = [r for r in results if r.case.startswith("record of")]
    every = sampled[-1]  # rate 1: every call reports its features
    per_record = every.median_us - off.median_us
    print(
        f"a sampled record of {FEATURES} features adds {per_record:.2f} µs (medians, rate 1 vs "
        f"off): on average rate x that per request, {0.25 * per_record:.2f} µs at 0.25"
    )
    for r in sampled:
        print(
            f"per-feature insights' added cost per request at rate {r.case.rsplit(' ', 1)[-1]}: "
            f"{r.mean_us - off.mean_us:.2f} µs on the request path (mean {r.mean_us:.2f} vs "
            f"{off.mean_us:.2f} µs off, {r.mean_us / off.mean_us:.2f}x); "
            f"{r.loop_us - off.loop_us:.2f} µs with the flush thread's work (loop)"
        )


if __name__ == "__main__":
    main()
