"""The detectors benchmark's line-up (``benchmarks/detectors.py``): driftloop's detectors, the
competitors (river's, a windowed average), and the tuning of a competitor to the false-alarm
budget."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from driftloop.drift import (
    CusumDetector,
    KSWindowDetector,
    PageHinkleyDetector,
    PSIWindowDetector,
    ShapeCusumDetector,
    mean_and_shape_detector,
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
