"""Population Stability Index of a window against a reference sample.

Bins are the reference deciles (fewer when the reference has ties), proportions are smoothed
by half a count so empty bins stay finite, and ``PSI = sum (q - p) * ln(q / p)``. The usual
rules of thumb (0.1: moderate, 0.25: major shift) ignore sample size; here the alarm level comes
from the false-alarm budget instead: with no change, ``PSI / (1/n + 1/m)`` follows a chi-square
law with ``bins - 1`` degrees of freedom, which gives the p-value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from driftloop.drift.calibration import MIN_REFERENCE
from driftloop.drift.window import WindowTestDetector, WindowTestResult
from driftloop.errors import ConfigError, InvalidInputError


def population_stability_index(
    reference_counts: NDArray[np.float64], sample_counts: NDArray[np.float64]
) -> float:
    """PSI between two histograms over the same bins (half-count smoothing)."""
    p = (reference_counts + 0.5) / (reference_counts.sum() + 0.5 * len(reference_counts))
    q = (sample_counts + 0.5) / (sample_counts.sum() + 0.5 * len(sample_counts))
    return float(np.sum((q - p) * np.log(q / p)))


class PSIWindowDetector(WindowTestDetector):
    """Drift when the window's PSI against the reference is too large for chance."""

    def __init__(
        self,
        reference: Sequence[float] | NDArray[np.float64],
        *,
        window: int = 500,
        step: int | None = None,
        bins: int = 10,
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
                f"a PSI detector needs at least {MIN_REFERENCE} reference values, got {values.size}"
            )
        if not np.all(np.isfinite(values)):
            raise InvalidInputError("the reference holds values that are not finite numbers")
        if bins < 2:
            raise ConfigError(f"PSI needs at least 2 bins, got {bins}")
        if float(np.ptp(values)) == 0.0:
            raise InvalidInputError("the reference values are all equal: PSI has no bins")
        inner = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
        self._edges = inner
        self._reference_counts = self._histogram(values)

    def _histogram(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        index = np.searchsorted(self._edges, values, side="right")
        return np.bincount(index, minlength=len(self._edges) + 1).astype(np.float64)

    def _test(self, window: NDArray[np.float64]) -> WindowTestResult:
        counts = self._histogram(window)
        psi = population_stability_index(self._reference_counts, counts)
        n, m = float(self._reference_counts.sum()), float(len(window))
        scaled = psi / (1.0 / n + 1.0 / m)
        p_value = float(stats.chi2.sf(scaled, len(counts) - 1))
        return WindowTestResult(psi, p_value, len(window), int(n))
