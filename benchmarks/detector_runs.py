"""The detectors benchmark's runs (``benchmarks/detectors.py``): the plans, each detector's
delays and false alarms, and the two oracles (the likelihood-ratio CUSUM, the mean CUSUM told
the drop)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from detector_lineup import N_BEFORE, DetectorSpec, count_alarms, first_detection
from driftloop.drift import (
    CusumDetector,
)
from driftloop.drift.synthetic import (
    ConfidenceScenario,
)


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
