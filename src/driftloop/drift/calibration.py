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
3. **Reference uncertainty**: the reference is a finite sample, so the detector's
   standardisation (its mean and standard deviation) is off the population's by a sampling
   error. The threshold meets two guarantees, whichever needs it higher: (a) the target holds
   with the live in-control mean ``margin_se`` standard errors below the reference mean (most
   references, not all), and (b) the target holds *on average over references* of this size:
   the rate at each point of the errors' joint normal law (the mean's ``1 / n``, the standard
   deviation's ``(m4 - 1) / (4 n)``, their covariance ``m3 / (2 n)``) from steps 1-2, averaged
   by quadrature (:class:`ReferenceSampling`). (b) dominates for small references and small
   targets. Where no threshold reaches (b) within twice (a)'s (references whose mean is off by
   more than the allowance drift upwards, and no threshold makes their rate small), the
   allowance is raised step by step until one does, with a warning: a small reference can only
   look for larger drops at a small rate (:func:`supported_allowance`).
"""

from __future__ import annotations

import hashlib
import logging
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

_log = logging.getLogger(__name__)

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
    reference_error: ReferenceSampling
    """The reference's sampling error, averaged over by :meth:`averaged_arl`."""
    simulated: tuple[SimulatedArl, ...]

    def predicted_arl(self, threshold: float) -> float:
        """One false alarm every so many values at ``threshold``, the reference mean taken
        ``margin`` standard deviations off (what bootstrap runs on the shifted increments
        measure)."""
        return siegmund_arl(threshold, self.theta, self.drift, self.overshoot)

    def averaged_arl(self, threshold: float) -> float:
        """The same for a fresh reference of this size: the rate averaged over the
        reference's sampling error (:class:`ReferenceSampling`)."""
        return 1.0 / max(self.reference_error.rate(threshold, self.overshoot), 1e-300)


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


REFERENCE_ERROR_NODES = (49, 5)
"""Quadrature nodes over the reference's sampling error: its mean (a grid over
``±REFERENCE_ERROR_SPAN`` standard errors, for the far tail that small targets depend on) and its
standard deviation (Gauss-Hermite)."""
REFERENCE_ERROR_SPAN = 9.0
THETA_SAMPLE = 300
"""At most this many reference quantiles stand for the reference in the nodes' coefficients."""
THRESHOLD_RATIO_LIMIT = 2.0
"""How much larger than a perfectly known reference's the averaged threshold may be before the
allowance is raised instead (:func:`supported_allowance`)."""
ALLOWANCE_STEP = 1.2
ALLOWANCE_STEPS = 40
MAX_THRESHOLD = 1_000.0
"""The largest threshold (standard deviations) calibration accepts; past it a detector would
need hundreds of values to react to any change, and the reference is reported too small."""


@dataclass(frozen=True)
class ReferenceSampling:
    """The reference is a sample: the detector standardises by its mean and standard deviation,
    each off the population's by a sampling error. Held as quadrature nodes over the two errors'
    joint (normal) law: at each node, the mean and variance of the increments the detector would
    add on in-control values, their adjustment coefficient (``inf`` where none can be positive)
    and the node's probability."""

    drifts: NDArray[np.float64]
    variances: NDArray[np.float64]
    thetas: NDArray[np.float64]
    weights: NDArray[np.float64]

    def rate(self, threshold: float, overshoot: float) -> float:
        """The false-alarm rate per value at ``threshold``, averaged over the reference's
        sampling error: Siegmund's rate at each node, or ``drift / h + var / h**2`` (a walk
        that does not drift down) where the node's mean increment is not negative."""
        reach = max(threshold + overshoot, 1e-9)
        down = self.drifts < 0
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            b = self.thetas * reach
            siegmund = self.thetas * np.abs(self.drifts) / (np.expm1(b) - b)
        siegmund = np.where(np.isfinite(siegmund), siegmund, 0.0)
        walk = np.minimum(1.0, np.maximum(self.drifts, 0.0) / reach + self.variances / reach**2)
        return float(np.sum(self.weights * np.where(down, siegmund, walk)))


def reference_error(standardised: NDArray[np.float64], allowance: float) -> ReferenceSampling:
    """:class:`ReferenceSampling` for an ``n``-value reference, given as ``(x - mean) / std``.

    With ``z`` the population's standardised values, a detector whose reference mean is off by
    ``d`` and whose standard deviation is off by a factor ``1 + e`` adds ``(d - z) / (1 + e) - k``.
    For a sample of ``n``, ``d ~ N(0, 1 / n)``, ``e ~ N(0, (m4 - 1) / (4 n))`` and their covariance
    is ``m3 / (2 n)`` (``m3``, ``m4``: the standardised third and fourth moments); the reference's
    own values stand for the population's ``z``."""
    n = len(standardised)
    z = np.quantile(standardised, (np.arange(THETA_SAMPLE) + 0.5) / THETA_SAMPLE)
    z = z if n > THETA_SAMPLE else np.asarray(standardised, dtype=np.float64)
    m3, m4 = float(np.mean(standardised**3)), float(np.mean(standardised**4))
    cov = np.array([[1.0, m3 / 2.0], [m3 / 2.0, max(m4 - 1.0, 1e-6) / 4.0]]) / n
    lower = np.linalg.cholesky(cov + 1e-12 * np.eye(2))
    grid = np.linspace(-REFERENCE_ERROR_SPAN, REFERENCE_ERROR_SPAN, REFERENCE_ERROR_NODES[0])
    grid_weights = np.exp(-0.5 * grid**2)
    hermite, hermite_weights = np.polynomial.hermite_e.hermegauss(REFERENCE_ERROR_NODES[1])
    u1, u2 = (a.ravel() for a in np.meshgrid(grid, hermite, indexing="ij"))
    weights = np.outer(grid_weights, hermite_weights).ravel()
    mean_error, scale_error = lower @ np.vstack([u1, u2])
    scale = np.maximum(1.0 + scale_error, 0.2)
    increments = (mean_error[:, None] - z[None, :]) / scale[:, None] - allowance
    return ReferenceSampling(
        drifts=increments.mean(axis=1),
        variances=increments.var(axis=1),
        thetas=_adjustment_coefficients(increments),
        weights=weights / weights.sum(),
    )


def _adjustment_coefficients(increments: NDArray[np.float64]) -> NDArray[np.float64]:
    """:func:`adjustment_coefficient` of each row (bisection, all rows at once); ``nan`` where
    the row's mean is not negative, ``inf`` where no value is positive."""
    rows = len(increments)
    log_n = math.log(increments.shape[1])
    mean = increments.mean(axis=1)
    top = increments.max(axis=1)
    solvable = (mean < 0) & (top > 0)
    y = increments[solvable]

    def log_mgf(theta: NDArray[np.float64]) -> NDArray[np.float64]:
        scaled = theta[:, None] * y
        top = scaled.max(axis=1)
        return np.asarray(np.log(np.exp(scaled - top[:, None]).sum(axis=1)) + top - log_n)

    high = np.maximum(2.0 * np.abs(mean[solvable]) / np.maximum(y.var(axis=1), 1e-12), 1e-6)
    for _ in range(200):
        short = log_mgf(high) <= 0
        if not short.any():
            break
        high = np.where(short, 2.0 * high, high)
    low = np.zeros_like(high)
    for _ in range(32):
        middle = 0.5 * (low + high)
        above = log_mgf(middle) > 0
        high = np.where(above, middle, high)
        low = np.where(above, low, middle)
    thetas = np.full(rows, math.nan)
    thetas[solvable] = 0.5 * (low + high)
    thetas[(mean < 0) & (top <= 0)] = math.inf
    return thetas


def threshold_for_rate(rate: float, error: ReferenceSampling, overshoot: float, n: int) -> float:
    """The threshold whose false-alarm rate, averaged over the reference's sampling error,
    equals ``rate`` (at least 0); a :class:`ConfigError` where no threshold up to
    :data:`MAX_THRESHOLD` reaches it (the reference is too small for the target)."""

    def gap(h: float) -> float:
        return math.log(max(error.rate(h, overshoot), 1e-300)) - math.log(rate)

    if gap(0.0) <= 0:
        return 0.0
    high = 1.0
    while gap(high) > 0:
        if high >= MAX_THRESHOLD:
            raise ConfigError(
                f"a {n}-value reference is too small for false_alarm_rate={rate:g}: the "
                "uncertainty of its mean alone would raise false alarms above that rate at "
                "any usable threshold; use a larger reference (the model's validation split), "
                "a larger min_shift or a larger false_alarm_rate"
            )
        high = min(2.0 * high, MAX_THRESHOLD)
    return float(brentq(gap, 0.0, high, xtol=1e-6))


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
    """Calibrate a one-sided (drop) CUSUM on ``reference`` for ``false_alarm_rate`` per sample,
    both with the reference mean ``margin_se`` standard errors off and averaged over the
    reference's sampling error; the warning level fires ``warning_factor`` times as often.
    Results are cached."""
    values = _checked_reference(reference)
    _check_options(false_alarm_rate, min_shift, warning_factor)
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
    calibration = _calibrate(values, false_alarm_rate, min_shift, warning_factor, margin_se, seed)
    _CACHE[key] = calibration
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return calibration


def _checked_reference(reference: NDArray[np.float64] | list[float]) -> NDArray[np.float64]:
    values = np.asarray(reference, dtype=np.float64)
    if values.ndim != 1 or len(values) < MIN_REFERENCE:
        raise InvalidInputError(
            f"a sequential detector needs at least {MIN_REFERENCE} reference values, "
            f"got {values.size}"
        )
    if not np.all(np.isfinite(values)):
        raise InvalidInputError("the reference holds values that are not finite numbers")
    return values


def _check_options(false_alarm_rate: float, min_shift: float, warning_factor: float) -> None:
    if not 0 < false_alarm_rate < 1:
        raise ConfigError(f"false_alarm_rate must lie in (0, 1), got {false_alarm_rate}")
    if min_shift <= 0:
        raise ConfigError(f"min_shift must be positive, got {min_shift}")
    if warning_factor < 1:
        raise ConfigError(f"warning_factor must be at least 1, got {warning_factor}")


def _calibrate(
    values: NDArray[np.float64],
    false_alarm_rate: float,
    min_shift: float,
    warning_factor: float,
    margin_se: float,
    seed: int,
) -> SequentialCalibration:
    n = len(values)
    mean, std = float(values.mean()), float(values.std(ddof=1))
    if std <= 1e-12 * max(1.0, abs(mean)):
        raise InvalidInputError(
            "the reference values are all equal: there is no spread to standardise by"
        )
    standardised = (values - mean) / std
    margin = margin_se / math.sqrt(n)
    requested = min_shift / (2.0 * std)
    if requested <= margin:
        raise ConfigError(
            f"min_shift={min_shift:g} is too small to tell from the uncertainty of a {n}-value "
            f"reference (standard error {std / math.sqrt(n):.3g}); use min_shift > "
            f"{2 * margin * std:.3g} or a larger reference"
        )
    if (-standardised - requested + margin).max() <= 0:
        raise ConfigError(f"min_shift={min_shift:g} is larger than any drop the reference allows")
    allowance, error = supported_allowance(standardised, requested, false_alarm_rate, margin)
    increments = -standardised - allowance + margin
    drift = float(increments.mean())
    theta = adjustment_coefficient(increments)
    target_arl = 1.0 / false_alarm_rate
    warning_arl = max(1.0, target_arl / warning_factor)
    simulated, overshoot = _simulated_overshoot(increments, theta, drift, target_arl, seed)

    def threshold(arl: float) -> float:
        """The larger of the margin's threshold and the averaged one (both guarantees)."""
        return max(
            threshold_for_arl(arl, theta, drift, overshoot),
            threshold_for_rate(1.0 / arl, error, overshoot, n),
        )

    return SequentialCalibration(
        mean=mean,
        std=std,
        allowance=allowance,
        threshold=threshold(target_arl),
        warning_threshold=threshold(warning_arl),
        target_arl=target_arl,
        warning_arl=warning_arl,
        theta=theta,
        drift=drift,
        overshoot=overshoot,
        n_reference=n,
        margin=margin,
        reference_error=error,
        simulated=tuple(simulated),
    )


def supported_allowance(
    standardised: NDArray[np.float64], requested: float, false_alarm_rate: float, margin: float
) -> tuple[float, ReferenceSampling]:
    """The allowance ``k`` (standard deviations) the detector runs at: ``requested`` (half of
    ``min_shift``) where the reference's sampling error costs at most
    :data:`THRESHOLD_RATIO_LIMIT` times the threshold the one-standard-error margin needs;
    otherwise the first of ``requested * ALLOWANCE_STEP**i`` that does (a small reference cannot
    tell small drops from its own error at a small rate: the detector then looks for larger
    ones, and a warning says so). Returns it with its :class:`ReferenceSampling`."""
    n = len(standardised)
    allowance = requested
    for _ in range(ALLOWANCE_STEPS):
        increments = -standardised - allowance + margin
        if increments.max() <= 0:
            break
        known = threshold_for_arl(
            1.0 / false_alarm_rate,
            adjustment_coefficient(increments),
            float(increments.mean()),
            GAUSSIAN_OVERSHOOT,
        )
        error = reference_error(standardised, allowance)
        averaged = _threshold_or_inf(false_alarm_rate, error, n)
        if averaged <= THRESHOLD_RATIO_LIMIT * max(known, 1.0):
            if allowance > requested:
                _log.warning(
                    "a %d-value reference cannot tell drops of %.3g standard deviations from "
                    "its own sampling error at false_alarm_rate=%g: the detector looks for "
                    "drops of at least %.3g (a larger reference lowers it)",
                    n,
                    2 * requested,
                    false_alarm_rate,
                    2 * allowance,
                )
            return allowance, error
        allowance *= ALLOWANCE_STEP
    raise ConfigError(
        f"min_shift is larger than any drop the reference allows, or a {n}-value reference is "
        f"too small for false_alarm_rate={false_alarm_rate:g}"
    )


def _threshold_or_inf(rate: float, error: ReferenceSampling, n: int) -> float:
    try:
        return threshold_for_rate(rate, error, GAUSSIAN_OVERSHOOT, n)
    except ConfigError:
        return math.inf


def _simulated_overshoot(
    increments: NDArray[np.float64], theta: float, drift: float, target_arl: float, seed: int
) -> tuple[list[SimulatedArl], float]:
    """Bootstrap runs on the reference's own increments at the ladder of thresholds, and the
    overshoot correction fitted to them."""
    ladder = sorted({min(a, target_arl) for a in LADDER_ARLS})
    start = [threshold_for_arl(a, theta, drift, GAUSSIAN_OVERSHOOT) for a in ladder]
    steps = int(max(SIMULATION_STEPS, 5 * ladder[-1]))
    simulated = simulate_arl(
        increments, np.asarray(start), np.random.default_rng(seed), steps=steps
    )
    return simulated, _fit_overshoot(simulated, theta, drift)


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
