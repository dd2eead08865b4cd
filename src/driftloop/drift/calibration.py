"""Thresholds for the sequential detectors (CUSUM, Page-Hinkley) from a target false-alarm rate.

The detectors accumulate increments ``y = (mean - x) / std - k`` (a drop in ``x`` pushes them
up). A false-alarm rate ``r`` per sample is an in-control average run length ``ARL0 = 1 / r``.

1. **Siegmund's approximation**, generalised to non-Gaussian increments:
   ``ARL0(h) = (exp(theta * (h + rho)) - theta * (h + rho) - 1) / (theta * |E[y]|)``,
   where ``theta`` is the adjustment coefficient, the positive root of ``E[exp(theta * y)] = 1``,
   computed on the *empirical* reference distribution (for Gaussian data ``theta = 2k`` and the
   formula is Siegmund's). Confidences are bounded and skewed, so the Gaussian ``theta`` would
   be wrong in both directions depending on the tail.
2. **Bootstrap simulation**: the detector is run on resampled reference values at a ladder of
   thresholds whose ARL is short enough to measure precisely (100 to 1,000 samples); the
   overshoot correction ``rho`` is fitted to those runs, and the threshold for the target ARL
   is read from the fitted curve (the log-ARL is linear in ``h`` with slope ``theta`` in the
   tail, so the extrapolation is well founded).
3. **Reference uncertainty**: the reference is a finite sample; its mean is off by about
   ``std / sqrt(n)``. Calibration assumes the live in-control mean lies ``margin_se`` standard
   errors *below* the reference mean, so the target holds for all but unlucky references.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq
from scipy.special import logsumexp

from driftloop.drift.base import DriftDetector
from driftloop.errors import ConfigError, InvalidInputError

MIN_REFERENCE = 30
"""The fewest reference values a detector accepts."""

GAUSSIAN_OVERSHOOT = 1.166
"""Siegmund's overshoot correction for standard normal increments (the starting guess)."""

LADDER_ARLS = (100.0, 300.0, 1_000.0)
SIMULATION_CHAINS = 1_000
SIMULATION_STEPS = 5_000


@dataclass(frozen=True)
class SimulatedArl:
    """One bootstrap simulation: at ``threshold``, one alarm every ``arl`` samples."""

    threshold: float
    arl: float
    alarms: int


@dataclass(frozen=True)
class SequentialCalibration:
    """Everything a CUSUM / Page-Hinkley detector needs, and how it was derived."""

    mean: float
    std: float
    allowance: float
    """``k``: half the smallest shift worth detecting, in reference standard deviations."""
    threshold: float
    """``h``: alarm when the statistic exceeds it (in standard deviations)."""
    warning_threshold: float
    target_arl: float
    warning_arl: float
    theta: float
    drift: float
    """Mean increment while nothing changes (negative), margin included."""
    overshoot: float
    n_reference: int
    margin: float
    """Added to each increment (standard deviations) for the reference-mean uncertainty."""
    simulated: tuple[SimulatedArl, ...]

    def predicted_arl(self, threshold: float) -> float:
        return siegmund_arl(threshold, self.theta, self.drift, self.overshoot)


def siegmund_arl(threshold: float, theta: float, drift: float, overshoot: float) -> float:
    """Siegmund's in-control average run length of a one-sided CUSUM at ``threshold``."""
    b = theta * (threshold + overshoot)
    return (math.expm1(b) - b) / (theta * abs(drift))


def threshold_for_arl(target_arl: float, theta: float, drift: float, overshoot: float) -> float:
    """The threshold whose :func:`siegmund_arl` equals ``target_arl`` (at least 0)."""

    def gap(h: float) -> float:
        return math.log(max(siegmund_arl(h, theta, drift, overshoot), 1e-300)) - math.log(
            target_arl
        )

    low = -overshoot + 1e-9
    if gap(max(low, 0.0)) >= 0:
        return 0.0
    high = max(1.0, 2.0 / theta)
    while gap(high) < 0:
        high *= 2.0
    return max(0.0, float(brentq(gap, max(low, 0.0), high, xtol=1e-6)))


def adjustment_coefficient(increments: NDArray[np.float64]) -> float:
    """The positive root ``theta`` of ``mean(exp(theta * y)) = 1`` over the increments."""
    y = np.asarray(increments, dtype=np.float64)
    mean, var = float(y.mean()), float(y.var())
    if mean >= 0 or y.max() <= 0 or var <= 0:
        raise InvalidInputError("increments need a negative mean and some positive values")
    log_n = math.log(len(y))

    def log_mgf(theta: float) -> float:
        return float(logsumexp(theta * y)) - log_n

    low = 1e-3 * 2.0 * abs(mean) / var
    high = 2.0 * abs(mean) / var
    while log_mgf(high) <= 0:
        high *= 2.0
    return float(brentq(log_mgf, low, high, xtol=1e-10, rtol=1e-10))


def simulate_arl(
    increments: NDArray[np.float64],
    thresholds: NDArray[np.float64],
    rng: np.random.Generator,
    *,
    chains: int = SIMULATION_CHAINS,
    steps: int = SIMULATION_STEPS,
) -> list[SimulatedArl]:
    """Run the CUSUM recursion on bootstrap resamples of ``increments`` (restarting after
    every alarm) at several thresholds at once; the alarm rate is the inverse ARL."""
    h = np.asarray(thresholds, dtype=np.float64)[:, None]
    state = np.zeros((len(h), chains))
    alarms = np.zeros(len(h), dtype=np.int64)
    block = 250
    for start in range(0, steps, block):
        draws = increments[
            rng.integers(0, len(increments), size=(min(block, steps - start), chains))
        ]
        for row in draws:
            state += row
            np.maximum(state, 0.0, out=state)
            hit = state > h
            alarms += hit.sum(axis=1)
            state[hit] = 0.0
    total = float(chains * steps)
    return [
        SimulatedArl(float(t), total / a if a else math.inf, int(a))
        for t, a in zip(h[:, 0], alarms, strict=True)
    ]


_CACHE: OrderedDict[tuple[object, ...], SequentialCalibration] = OrderedDict()
_CACHE_SIZE = 128


def calibrate_sequential(
    reference: NDArray[np.float64] | list[float],
    *,
    false_alarm_rate: float,
    min_shift: float,
    warning_factor: float = 10.0,
    margin_se: float = 1.0,
    seed: int = 0,
) -> SequentialCalibration:
    """Calibrate a one-sided (drop) CUSUM on ``reference`` for ``false_alarm_rate`` per sample;
    the warning level fires ``warning_factor`` times as often. Results are cached."""
    values = np.asarray(reference, dtype=np.float64)
    if values.ndim != 1 or len(values) < MIN_REFERENCE:
        raise InvalidInputError(
            f"a sequential detector needs at least {MIN_REFERENCE} reference values, "
            f"got {values.size}"
        )
    if not np.all(np.isfinite(values)):
        raise InvalidInputError("the reference holds values that are not finite numbers")
    if not 0 < false_alarm_rate < 1:
        raise ConfigError(f"false_alarm_rate must lie in (0, 1), got {false_alarm_rate}")
    if min_shift <= 0:
        raise ConfigError(f"min_shift must be positive, got {min_shift}")
    if warning_factor < 1:
        raise ConfigError(f"warning_factor must be at least 1, got {warning_factor}")
    key = (
        hashlib.sha256(values.tobytes()).hexdigest(),
        false_alarm_rate,
        min_shift,
        warning_factor,
        margin_se,
        seed,
    )
    cached = _CACHE.get(key)
    if cached is not None:
        _CACHE.move_to_end(key)
        return cached

    n = len(values)
    mean, std = float(values.mean()), float(values.std(ddof=1))
    if std <= 1e-12 * max(1.0, abs(mean)):
        raise InvalidInputError(
            "the reference values are all equal: there is no spread to standardise by"
        )
    allowance = min_shift / (2.0 * std)
    margin = margin_se / math.sqrt(n)
    if allowance <= margin:
        raise ConfigError(
            f"min_shift={min_shift:g} is too small to tell from the uncertainty of a {n}-value "
            f"reference (standard error {std / math.sqrt(n):.3g}); use min_shift > "
            f"{2 * margin * std:.3g} or a larger reference"
        )
    increments = (mean - values) / std - allowance + margin
    drift = float(increments.mean())
    if increments.max() <= 0:
        raise ConfigError(f"min_shift={min_shift:g} is larger than any drop the reference allows")
    theta = adjustment_coefficient(increments)
    target_arl = 1.0 / false_alarm_rate
    warning_arl = max(1.0, target_arl / warning_factor)

    ladder = sorted({min(a, target_arl) for a in LADDER_ARLS})
    start = [threshold_for_arl(a, theta, drift, GAUSSIAN_OVERSHOOT) for a in ladder]
    steps = int(max(SIMULATION_STEPS, 5 * ladder[-1]))
    simulated = simulate_arl(
        increments, np.asarray(start), np.random.default_rng(seed), steps=steps
    )
    overshoot = _fit_overshoot(simulated, theta, drift)
    calibration = SequentialCalibration(
        mean=mean,
        std=std,
        allowance=allowance,
        threshold=threshold_for_arl(target_arl, theta, drift, overshoot),
        warning_threshold=threshold_for_arl(warning_arl, theta, drift, overshoot),
        target_arl=target_arl,
        warning_arl=warning_arl,
        theta=theta,
        drift=drift,
        overshoot=overshoot,
        n_reference=n,
        margin=margin,
        simulated=tuple(simulated),
    )
    _CACHE[key] = calibration
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return calibration


def _fit_overshoot(simulated: list[SimulatedArl], theta: float, drift: float) -> float:
    """The ``rho`` that makes Siegmund's formula match the simulated ARLs, weighted by the
    number of alarms behind each (its precision), from the two highest thresholds."""
    usable = [s for s in simulated if s.alarms >= 30 and s.threshold > 0][-2:]
    if not usable:
        return GAUSSIAN_OVERSHOOT
    fits = [(threshold_for_arl(s.arl, theta, drift, 0.0) - s.threshold, s.alarms) for s in usable]
    return sum(rho * w for rho, w in fits) / sum(w for _, w in fits)


class CalibratedMeanDetector(DriftDetector):
    """A sequential detector for a drop in the mean, calibrated on a reference sample: holds
    the calibration and the standardisation both CUSUM and Page-Hinkley use; each sets its
    own statistics in ``_restart``."""

    def __init__(
        self,
        reference: Sequence[float] | NDArray[np.float64],
        *,
        false_alarm_rate: float = 1e-5,
        min_shift: float = 0.05,
        warning_factor: float = 10.0,
        margin_se: float = 1.0,
    ) -> None:
        super().__init__()
        self.calibration: SequentialCalibration = calibrate_sequential(
            np.asarray(reference, dtype=np.float64),
            false_alarm_rate=false_alarm_rate,
            min_shift=min_shift,
            warning_factor=warning_factor,
            margin_se=margin_se,
        )
        self.false_alarm_rate = false_alarm_rate
        self.min_shift = min_shift
        self._mean = self.calibration.mean
        self._scale = 1.0 / self.calibration.std
        self._k = self.calibration.allowance
        self._h = self.calibration.threshold
        self._h_warning = self.calibration.warning_threshold
        self._restart()  # each algorithm's own statistics start at zero
