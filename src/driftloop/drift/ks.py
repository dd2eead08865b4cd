"""Two-sample Kolmogorov-Smirnov test of a window against a reference sample (confidence,
text length or any numeric metric)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from driftloop.drift.calibration import MIN_REFERENCE
from driftloop.drift.window import WindowTestDetector, WindowTestResult
from driftloop.errors import InvalidInputError


def ks_statistic(reference_sorted: NDArray[np.float64], sample: NDArray[np.float64]) -> float:
    """``max |F_reference - F_sample|`` over every value of both (``reference_sorted`` sorted)."""
    sample_sorted = np.sort(sample)
    points = np.concatenate([reference_sorted, sample_sorted])
    cdf_ref = np.searchsorted(reference_sorted, points, side="right") / len(reference_sorted)
    cdf_sample = np.searchsorted(sample_sorted, points, side="right") / len(sample_sorted)
    return float(np.max(np.abs(cdf_ref - cdf_sample)))


def ks_p_value(statistic: float, n_reference: int, n_sample: int) -> float:
    """Two-sided p-value, with the one-sample distribution at the effective size
    ``n * m / (n + m)`` (the approximation scipy's ``ks_2samp(method="asymp")`` uses)."""
    effective = max(1, round(n_reference * n_sample / (n_reference + n_sample)))
    return float(np.clip(stats.kstwo.sf(statistic, effective), 0.0, 1.0))


class KSWindowDetector(WindowTestDetector):
    """Drift when the window's distribution differs from the reference (KS, two-sided)."""

    def __init__(
        self,
        reference: Sequence[float] | NDArray[np.float64],
        *,
        window: int = 500,
        step: int | None = None,
        false_alarm_rate: float = 1e-5,
        warning_factor: float = 10.0,
    ) -> None:
        super().__init__(
            window=window,
            step=step,
            false_alarm_rate=false_alarm_rate,
            warning_factor=warning_factor,
        )
        values = np.asarray(reference, dtype=np.float64)
        if values.ndim != 1 or len(values) < MIN_REFERENCE:
            raise InvalidInputError(
                f"a KS detector needs at least {MIN_REFERENCE} reference values, got {values.size}"
            )
        if not np.all(np.isfinite(values)):
            raise InvalidInputError("the reference holds values that are not finite numbers")
        self._reference = np.sort(values)

    def _test(self, window: NDArray[np.float64]) -> WindowTestResult:
        d = ks_statistic(self._reference, window)
        return WindowTestResult(
            d, ks_p_value(d, len(self._reference), len(window)), len(window), len(self._reference)
        )
