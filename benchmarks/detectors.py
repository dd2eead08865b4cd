"""Drift detectors side by side: driftloop's against river's and a windowed-average threshold.

Streams are top-class confidences of a synthetic calibrated classifier (a Beta mixture, mean
~0.85; see ``driftloop.drift.synthetic``). Each drift stream has 2,000 in-control values, then a
scenario: abrupt moderate drop (-0.05), abrupt severe drop (-0.15), gradual slide (to -0.10 over
2,000 values), shape change (same mean, more mass at low confidence). No-change streams measure
false alarms. Every detector that needs tuning is tuned, on separate no-change streams, to the
most sensitive setting that stays within the false-alarm budget (default 1 per 10,000 values).

    .venv/bin/python benchmarks/detectors.py            # full run (a few minutes)
    .venv/bin/python benchmarks/detectors.py --quick    # smoke run (well under a minute)
    .venv/bin/python benchmarks/detectors.py --markdown # tables for docs/benchmarks.md

Requires river (``pip install 'driftloop[dev]'``).
"""

from __future__ import annotations

import argparse
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.table import Table

from driftloop.drift import (
    CusumDetector,
    KSWindowDetector,
    PageHinkleyDetector,
    PSIWindowDetector,
    ShapeCusumDetector,
    mean_and_shape_detector,
)
from driftloop.drift.synthetic import (
    CALIBRATED_CLASSIFIER,
    ConfidenceScenario,
    confidence_scenarios,
)

N_BEFORE = 2_000
N_AFTER = 3_000
REFERENCE_SIZE = 2_000
MIN_SHIFT = 0.05
COMBINED = "driftloop CUSUM + shape"
"""The one configuration the goal is judged on (``algorithm: cusum_shape``, the init default)."""


class StreamDetector(Protocol):
    def update(self, x: float) -> object: ...

    @property
    def drift_detected(self) -> bool: ...


Factory = Callable[[NDArray[np.float64]], StreamDetector]
"""Builds a fresh detector given the reference sample (river's detectors ignore it)."""


class WindowedAverageDetector:
    """The plain threshold monitor: alarm when the average of the last ``window`` values falls
    below ``reference mean - offset``; like river's detectors it starts afresh after an alarm."""

    def __init__(self, reference_mean: float, offset: float, window: int = 500) -> None:
        self.limit = (reference_mean - offset) * window
        self.window = window
        self._values: deque[float] = deque()
        self._sum = 0.0
        self._detected = False

    @property
    def drift_detected(self) -> bool:
        return self._detected

    def update(self, x: float) -> None:
        if self._detected:
            self._values.clear()
            self._sum = 0.0
        self._values.append(x)
        self._sum += x
        if len(self._values) > self.window:
            self._sum -= self._values.popleft()
        self._detected = len(self._values) == self.window and self._sum < self.limit


@dataclass
class DetectorSpec:
    name: str
    ours: bool
    make: Factory
    setting: str
    max_streams: int | None = None
    """Cap on streams per scenario (for slow detectors)."""


@dataclass
class Tunable:
    """A competitor with one parameter, tuned to the false-alarm budget."""

    name: str
    label: str
    ladder: Sequence[float]
    """Parameter values, most sensitive first (false alarms fall along the ladder)."""
    build: Callable[[float], Factory]
    slow: bool = False


@dataclass
class ScenarioResult:
    delays: list[float] = field(default_factory=list)
    """Per stream: values after the change until detection; ``inf`` when missed."""
    early_alarms: int = 0
    early_values: int = 0

    @property
    def detection_rate(self) -> float:
        return sum(math.isfinite(d) for d in self.delays) / max(1, len(self.delays))

    def quantile(self, q: float) -> float:
        """Delay quantile over all streams, misses counted as infinitely late."""
        if not self.delays:
            return math.inf
        ordered = sorted(self.delays)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


@dataclass
class DetectorResult:
    spec: DetectorSpec
    scenarios: dict[str, ScenarioResult]
    false_alarms: int
    no_change_values: int
    seconds: float

    @property
    def false_alarms_per_10k(self) -> float:
        return 1e4 * self.false_alarms / max(1, self.no_change_values)

    @property
    def updates_per_second(self) -> float:
        return self.no_change_values / self.seconds if self.seconds else math.inf


@dataclass(frozen=True)
class Plan:
    streams: int
    slow_streams: int
    no_change_streams: int
    no_change_length: int
    slow_no_change_streams: int
    tuning_streams: int
    tuning_length: int
    slow_tuning_streams: int
    slow_tuning_length: int
    references: int


FULL = Plan(
    streams=100,
    slow_streams=25,
    no_change_streams=10,
    no_change_length=50_000,
    slow_no_change_streams=2,
    tuning_streams=4,
    tuning_length=50_000,
    slow_tuning_streams=1,
    slow_tuning_length=50_000,
    references=4,
)
QUICK = Plan(
    streams=20,
    slow_streams=3,
    no_change_streams=4,
    no_change_length=25_000,
    slow_no_change_streams=1,
    tuning_streams=2,
    tuning_length=25_000,
    slow_tuning_streams=1,
    slow_tuning_length=10_000,
    references=2,
)


def count_alarms(detector: StreamDetector, values: Sequence[float]) -> int:
    alarms = 0
    for x in values:
        detector.update(x)
        if detector.drift_detected:
            alarms += 1
    return alarms


def first_detection(
    detector: StreamDetector, values: Sequence[float], change: int
) -> tuple[int, float]:
    """(alarms before ``change``, delay after it: values seen after the change, or inf)."""
    early = 0
    for i, x in enumerate(values):
        detector.update(x)
        if detector.drift_detected:
            if i < change:
                early += 1
            else:
                return early, float(i - change + 1)
    return early, math.inf


def tune(
    tunable: Tunable,
    references: list[NDArray[np.float64]],
    streams: list[list[float]],
    budget: float,
) -> tuple[float, float]:
    """Binary search along the ladder for the most sensitive value within the budget;
    returns (value, measured false alarms per 10,000)."""
    total = sum(len(s) for s in streams)

    def rate(value: float) -> float:
        make = tunable.build(value)
        alarms = sum(
            count_alarms(make(references[i % len(references)]), s) for i, s in enumerate(streams)
        )
        return 1e4 * alarms / total

    low, high = 0, len(tunable.ladder) - 1
    measured: dict[int, float] = {}
    while low < high:
        middle = (low + high) // 2
        measured[middle] = rate(tunable.ladder[middle])
        if measured[middle] <= budget:
            high = middle
        else:
            low = middle + 1
    if low not in measured:
        measured[low] = rate(tunable.ladder[low])
    return tunable.ladder[low], measured[low]


def our_detectors(false_alarm_rate: float) -> list[DetectorSpec]:
    rate = false_alarm_rate

    def cusum(r: NDArray[np.float64]) -> StreamDetector:
        return CusumDetector(r, false_alarm_rate=rate, min_shift=MIN_SHIFT)

    def cusum_strict(r: NDArray[np.float64]) -> StreamDetector:
        return CusumDetector(r, false_alarm_rate=rate / 10, min_shift=MIN_SHIFT)

    def page_hinkley(r: NDArray[np.float64]) -> StreamDetector:
        return PageHinkleyDetector(r, false_alarm_rate=rate, min_shift=MIN_SHIFT)

    def ks(r: NDArray[np.float64]) -> StreamDetector:
        return KSWindowDetector(r, window=500, false_alarm_rate=rate)

    def ks_short(r: NDArray[np.float64]) -> StreamDetector:
        return KSWindowDetector(r, window=200, step=20, false_alarm_rate=rate)

    def psi(r: NDArray[np.float64]) -> StreamDetector:
        return PSIWindowDetector(r, window=500, false_alarm_rate=rate)

    def shape(r: NDArray[np.float64]) -> StreamDetector:
        return ShapeCusumDetector(r, false_alarm_rate=rate)

    def combined(r: NDArray[np.float64]) -> StreamDetector:
        return mean_and_shape_detector(r, false_alarm_rate=rate, min_shift=MIN_SHIFT)

    return [
        DetectorSpec("driftloop CUSUM", True, cusum, f"target {rate:g}/value, min_shift 0.05"),
        DetectorSpec(
            "driftloop CUSUM (strict)",
            True,
            cusum_strict,
            f"target {rate / 10:g}/value, min_shift 0.05",
        ),
        DetectorSpec(
            "driftloop Page-Hinkley", True, page_hinkley, f"target {rate:g}/value, min_shift 0.05"
        ),
        DetectorSpec("driftloop KS window", True, ks, f"window 500, step 100, target {rate:g}"),
        DetectorSpec(
            "driftloop KS window (200)", True, ks_short, f"window 200, step 20, target {rate:g}"
        ),
        DetectorSpec("driftloop PSI window", True, psi, f"window 500, step 100, target {rate:g}"),
        DetectorSpec("driftloop shape CUSUM", True, shape, f"target {rate:g}/value, k 0.25"),
        DetectorSpec(
            COMBINED,
            True,
            combined,
            f"target {rate:g}/value in all: mean CUSUM 90 %, shape CUSUM 10 %",
        ),
    ]


def competitors() -> tuple[list[DetectorSpec], list[Tunable]]:
    from river import drift

    def plain_average(r: NDArray[np.float64]) -> StreamDetector:
        return WindowedAverageDetector(float(r.mean()), 0.05)

    def adwin(value: float) -> Factory:
        return lambda r: drift.ADWIN(delta=value, clock=1)  # type: ignore[no-untyped-call]

    def page_hinkley(value: float) -> Factory:
        return lambda r: drift.PageHinkley(delta=MIN_SHIFT / 2, threshold=value, mode="down")

    def kswin(value: float) -> Factory:
        return lambda r: drift.KSWIN(alpha=value, window_size=500, stat_size=100, seed=7)

    def average(value: float) -> Factory:
        return lambda r: WindowedAverageDetector(float(r.mean()), value)

    fixed = [
        DetectorSpec(
            "windowed average (plain)", False, plain_average, "avg of 500 < reference - 0.05"
        )
    ]
    tunables = [
        Tunable("river ADWIN", "delta (clock=1)", list(np.geomspace(0.99, 1e-8, 20)), adwin),
        Tunable("river PageHinkley", "threshold", list(np.geomspace(0.5, 30.0, 31)), page_hinkley),
        Tunable("river KSWIN", "alpha", list(np.geomspace(1e-2, 1e-8, 13)), kswin, slow=True),
        Tunable("windowed average (tuned)", "offset", list(np.linspace(0.002, 0.06, 30)), average),
    ]
    return fixed, tunables


def evaluate(
    spec: DetectorSpec,
    references: list[NDArray[np.float64]],
    scenarios: list[tuple[ConfidenceScenario, list[list[float]]]],
    no_change: list[list[float]],
) -> DetectorResult:
    results: dict[str, ScenarioResult] = {}
    for scenario, streams in scenarios:
        result = ScenarioResult()
        for i, values in enumerate(streams[: spec.max_streams]):
            early, delay = first_detection(
                spec.make(references[i % len(references)]), values, N_BEFORE
            )
            result.delays.append(delay)
            result.early_alarms += early
            result.early_values += N_BEFORE
        results[scenario.name] = result
    alarms = 0
    seen = 0
    started = time.perf_counter()
    for i, stream in enumerate(no_change):
        alarms += count_alarms(spec.make(references[i % len(references)]), stream)
        seen += len(stream)
    return DetectorResult(spec, results, alarms, seen, time.perf_counter() - started)


@dataclass
class OracleResult:
    """The likelihood-ratio CUSUM that knows both distributions exactly: the quickest any
    detector can be at this false-alarm rate (Moustakides 1986). Not deployable (nobody knows
    the post-change law); it is here to show what the goal asks of physics."""

    threshold: float
    false_alarms_per_10k: float
    result: ScenarioResult


def log_likelihood_ratio(scenario: ConfidenceScenario, values: Sequence[float]) -> list[float]:
    x = np.clip(np.asarray(values, dtype=np.float64), 1e-9, 1 - 1e-9)
    ratio: NDArray[np.float64] = np.log(scenario.after.pdf(x)) - np.log(scenario.before.pdf(x))
    return [float(v) for v in ratio]


def llr_cusum(scores: Sequence[float], threshold: float, change: int | None) -> tuple[int, float]:
    """(alarms before ``change``, delay after it); restarts after each early alarm."""
    s = 0.0
    early = 0
    for i, v in enumerate(scores):
        s += v
        if s < 0.0:
            s = 0.0
        elif s > threshold:
            if change is None or i < change:
                early += 1
                s = 0.0
            else:
                return early, float(i - change + 1)
    return early, math.inf


def oracle(
    scenario: ConfidenceScenario,
    streams: list[list[float]],
    tuning: list[list[float]],
    no_change: list[list[float]],
    budget: float,
) -> OracleResult:
    def rate(threshold: float, scores: list[list[float]]) -> float:
        alarms = sum(llr_cusum(s, threshold, None)[0] for s in scores)
        return 1e4 * alarms / sum(len(s) for s in scores)

    tuning_scores = [log_likelihood_ratio(scenario, t) for t in tuning]
    ladder = list(np.geomspace(0.5, 30.0, 60))
    low, high = 0, len(ladder) - 1
    while low < high:
        middle = (low + high) // 2
        if rate(ladder[middle], tuning_scores) <= budget:
            high = middle
        else:
            low = middle + 1
    threshold = float(ladder[low])
    result = ScenarioResult()
    for values in streams:
        early, delay = llr_cusum(log_likelihood_ratio(scenario, values), threshold, N_BEFORE)
        result.delays.append(delay)
        result.early_alarms += early
        result.early_values += N_BEFORE
    measured = rate(threshold, [log_likelihood_ratio(scenario, v) for v in no_change])
    return OracleResult(threshold, measured, result)


def fmt_delay(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.0f}"


def mean_oracle(
    scenario: ConfidenceScenario,
    references: list[NDArray[np.float64]],
    streams: list[list[float]],
    false_alarm_rate: float,
) -> ScenarioResult | None:
    """Our CUSUM told the true size of an abrupt drop (``min_shift`` = the drop), at the full
    budget: the quickest a mean CUSUM configured from the reference can be on that drop.
    ``None`` for scenarios that are not abrupt drops of the mean."""
    drop = scenario.before.mean - scenario.after.mean
    if scenario.ramp or drop < 0.01:
        return None
    result = ScenarioResult()
    for i, values in enumerate(streams):
        detector = CusumDetector(
            references[i % len(references)], false_alarm_rate=false_alarm_rate, min_shift=drop
        )
        early, delay = first_detection(detector, values, N_BEFORE)
        result.delays.append(delay)
        result.early_alarms += early
        result.early_values += N_BEFORE
    return result


def goal_rows(
    results: list[DetectorResult],
    budget: float,
    scenario_names: list[str],
    oracles: dict[str, OracleResult],
    mean_oracles: dict[str, ScenarioResult | None],
) -> list[tuple[str, ...]]:
    """Per scenario: the one default configuration against the best tuned competitor and,
    on abrupt drops, against the mean-CUSUM oracle."""
    rows: list[tuple[str, ...]] = []
    combined = next(r for r in results if r.spec.name == COMBINED)
    within = combined.false_alarms_per_10k <= budget
    for name in scenario_names:
        ours = [r for r in results if r.spec.ours and r.false_alarms_per_10k <= budget]
        theirs = [r for r in results if not r.spec.ours]
        best_ours = min(ours, key=lambda r: r.scenarios[name].quantile(0.5), default=None)
        best_theirs = min(theirs, key=lambda r: r.scenarios[name].quantile(0.5))
        delay = combined.scenarios[name].quantile(0.5)
        ours_delay = math.inf if best_ours is None else best_ours.scenarios[name].quantile(0.5)
        their_delay = best_theirs.scenarios[name].quantile(0.5)
        versus_theirs = "—" if math.isinf(their_delay) else f"{delay / their_delay:.2f}"
        beats = within and (math.isinf(their_delay) or delay <= their_delay)
        mean_result = mean_oracles.get(name)
        if mean_result is None:
            oracle_cell, versus_oracle = "—", "—"
        else:
            oracle_delay = mean_result.quantile(0.5)
            ratio = delay / oracle_delay
            oracle_cell = fmt_delay(oracle_delay)
            versus_oracle = f"{ratio:.2f} ({'met' if within and ratio <= 1.1 else 'not met'})"
        rows.append(
            (
                name,
                f"{fmt_delay(delay)} ({100 * combined.scenarios[name].detection_rate:.0f}%)",
                f"{fmt_delay(ours_delay)} ({best_ours.spec.name if best_ours else 'none'})",
                f"{fmt_delay(their_delay)} ({best_theirs.spec.name})",
                f"{versus_theirs} ({'met' if beats else 'not met'})",
                oracle_cell,
                versus_oracle,
                f"{fmt_delay(oracles[name].result.quantile(0.5))} "
                f"({oracles[name].false_alarms_per_10k:.2f} / 10k)",
            )
        )
    return rows


def render(
    results: list[DetectorResult],
    budget: float,
    scenario_names: list[str],
    oracles: dict[str, OracleResult],
    mean_oracles: dict[str, ScenarioResult | None],
    markdown: bool,
    console: Console,
) -> None:
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    summary = []
    for r in results:
        early = sum(s.early_alarms for s in r.scenarios.values())
        early_values = sum(s.early_values for s in r.scenarios.values())
        summary.append(
            [
                r.spec.name,
                r.spec.setting,
                f"{r.false_alarms_per_10k:.2f}",
                f"{1e4 * early / max(1, early_values):.2f}",
                f"{r.updates_per_second:,.0f}",
            ]
        )
    tables.append(
        (
            "False alarms and throughput",
            [
                "detector",
                "setting",
                "false alarms / 10k (no change)",
                "false alarms / 10k (before drift)",
                "updates/s",
            ],
            summary,
        )
    )
    for name in scenario_names:
        rows = [
            [
                r.spec.name,
                f"{100 * r.scenarios[name].detection_rate:.0f}%",
                fmt_delay(r.scenarios[name].quantile(0.5)),
                fmt_delay(r.scenarios[name].quantile(0.9)),
            ]
            for r in results
        ]
        tables.append(
            (
                f"{name}: detection delay (values after the change)",
                ["detector", "detected", "median delay", "p90 delay"],
                rows,
            )
        )
    goals = [list(row) for row in goal_rows(results, budget, scenario_names, oracles, mean_oracles)]
    tables.append(
        (
            f"Goal: {COMBINED} (one configuration, from the reference alone) at <= {budget:g} "
            "false alarm per 10,000 values: median delay no worse than the best tuned competitor "
            "on every scenario, and within 1.1x the mean-CUSUM oracle on abrupt drops "
            "(misses count as never)",
            [
                "scenario",
                f"{COMBINED} median delay (detected)",
                "best driftloop detector",
                "best tuned competitor",
                "ratio to competitor (goal <= 1)",
                "mean-CUSUM oracle (told the drop)",
                "ratio to oracle (goal <= 1.1)",
                "LLR-CUSUM oracle (false alarms)",
            ],
            goals,
        )
    )
    for title, header, rows in tables:
        if markdown:
            console.print(f"\n**{title}**\n", markup=False)
            console.print("| " + " | ".join(header) + " |", markup=False)
            console.print("|" + "---|" * len(header), markup=False)
            for row in rows:
                console.print("| " + " | ".join(row) + " |", markup=False)
        else:
            table = Table(title=title)
            for column in header:
                table.add_column(column, overflow="fold")
            for row in rows:
                table.add_row(*row)
            console.print(table)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter streams")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--seed", type=int, default=2024, help="random seed")
    parser.add_argument(
        "--budget", type=float, default=1.0, help="false alarms per 10,000 values allowed"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    began = time.perf_counter()
    console = Console(width=250 if args.markdown else None)
    rng = np.random.default_rng(args.seed)
    budget = args.budget
    false_alarm_rate = budget / 1e4

    references = [CALIBRATED_CLASSIFIER.sample(REFERENCE_SIZE, rng) for _ in range(plan.references)]
    drifting = [s for s in confidence_scenarios() if s.drifts]
    scenarios = [
        (s, [s.generate(N_BEFORE, N_AFTER, rng).tolist() for _ in range(plan.streams)])
        for s in drifting
    ]
    no_change = [
        CALIBRATED_CLASSIFIER.sample(plan.no_change_length, rng).tolist()
        for _ in range(plan.no_change_streams)
    ]
    tuning = [
        CALIBRATED_CLASSIFIER.sample(plan.tuning_length, rng).tolist()
        for _ in range(plan.tuning_streams)
    ]

    specs = our_detectors(false_alarm_rate)
    fixed, tunables = competitors()
    specs.extend(fixed)
    for tunable in tunables:
        streams = tuning
        if tunable.slow:
            streams = [t[: plan.slow_tuning_length] for t in tuning[: plan.slow_tuning_streams]]
        started = time.perf_counter()
        value, measured = tune(tunable, references, streams, budget)
        console.print(
            f"tuned {tunable.name}: {tunable.label}={value:.3g} "
            f"({measured:.2f} false alarms / 10k on tuning streams, "
            f"{time.perf_counter() - started:.0f}s)",
            markup=False,
        )
        specs.append(
            DetectorSpec(
                tunable.name,
                False,
                tunable.build(value),
                f"{tunable.label}={value:.3g} (tuned)",
                max_streams=plan.slow_streams if tunable.slow else None,
            )
        )

    results = []
    for spec in specs:
        started = time.perf_counter()
        slow = spec.max_streams is not None
        streams = no_change[: plan.slow_no_change_streams] if slow else no_change
        results.append(evaluate(spec, references, scenarios, streams))
        console.print(
            f"evaluated {spec.name} in {time.perf_counter() - started:.0f}s", markup=False
        )
    oracles = {
        scenario.name: oracle(scenario, streams, tuning, no_change, budget)
        for scenario, streams in scenarios
    }
    mean_oracles = {
        scenario.name: mean_oracle(scenario, references, streams, false_alarm_rate)
        for scenario, streams in scenarios
    }
    render(
        results, budget, [s.name for s in drifting], oracles, mean_oracles, args.markdown, console
    )
    console.print(
        f"\n{'quick' if args.quick else 'full'} run, seed {args.seed}, "
        f"{time.perf_counter() - began:.0f}s",
        markup=False,
    )


if __name__ == "__main__":
    main()
