"""Chi-square test of the predicted-class mix in a window against the reference mix.

A 2 x K contingency test (reference counts vs window counts), so the reference's own sampling
noise is accounted for. A label the reference never predicted counts in an extra column.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from driftloop.drift.window import WindowTestDetector, WindowTestResult
from driftloop.errors import InvalidInputError


def chi_square_two_sample(
    reference_counts: NDArray[np.float64], sample_counts: NDArray[np.float64]
) -> tuple[float, float]:
    """(statistic, p-value) of the 2 x K contingency test; empty columns are dropped."""
    table = np.vstack([reference_counts, sample_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(np.sum((table - expected) ** 2 / expected))
    return statistic, float(stats.chi2.sf(statistic, table.shape[1] - 1))


class ChiSquareWindowDetector(WindowTestDetector):
    """Drift when the mix of predicted classes in the window departs from the reference mix.

    ``update`` takes a class label (``"sports"``) or its index in ``class_mix`` (``2.0``).
    """

    def __init__(
        self,
        class_mix: Mapping[str, float],
        n_reference: int,
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
        if not class_mix:
            raise InvalidInputError("a chi-square detector needs a reference class mix")
        shares = np.asarray(list(class_mix.values()), dtype=np.float64)
        if np.any(shares < 0) or not np.all(np.isfinite(shares)) or shares.sum() <= 0:
            raise InvalidInputError(f"class mix shares must be non-negative numbers: {class_mix}")
        if n_reference < 1:
            raise InvalidInputError(f"n_reference must be positive, got {n_reference}")
        self.labels: tuple[str, ...] = tuple(class_mix)
        self._index = {label: i for i, label in enumerate(self.labels)}
        self._other = len(self.labels)
        counts = shares / shares.sum() * n_reference
        self._reference_counts = np.append(counts, 0.0)

    def update(self, x: float | str) -> None:
        if isinstance(x, str):
            super().update(float(self._index.get(x, self._other)))
            return
        if not self._is_index(x):
            raise InvalidInputError(
                f"expected a class label or an index below {len(self.labels)}, got {x!r}"
            )
        super().update(x)

    def _is_index(self, x: object) -> bool:
        if isinstance(x, bool) or not isinstance(x, numbers.Real):
            return False
        value = float(x)
        return math.isfinite(value) and value == int(value) and 0 <= value < len(self.labels)

    def _test(self, window: NDArray[np.float64]) -> WindowTestResult:
        counts = np.bincount(window.astype(np.int64), minlength=self._other + 1)
        statistic, p_value = chi_square_two_sample(
            self._reference_counts, counts.astype(np.float64)
        )
        return WindowTestResult(
            statistic, p_value, len(window), round(float(self._reference_counts.sum()))
        )
