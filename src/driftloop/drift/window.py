"""The machinery shared by the two-sample window tests (KS, chi-square, PSI).

The last ``window`` values are tested against the reference every ``step`` values (``step ==
window``: tumbling windows; smaller: sliding). To keep the false-alarm rate *per sample* at
``false_alarm_rate`` across the repeated tests, each test runs at level
``alpha = false_alarm_rate * step`` (Bonferroni: over ``N`` samples there are ``N / step`` tests,
so the chance of any false alarm is at most ``N * false_alarm_rate``). Overlapping sliding
windows are positively correlated, so the bound is conservative there. A warning is a p-value
below ``alpha * warning_factor``.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from driftloop.drift.base import DriftDetector
from driftloop.errors import ConfigError

MIN_WINDOW = 20


@dataclass(frozen=True)
class WindowTestResult:
    """One two-sample test of the current window against the reference."""

    statistic: float
    p_value: float
    n_window: int
    n_reference: int


class WindowTestDetector(DriftDetector):
    """A two-sample test over a sliding or tumbling window, with a per-sample false-alarm
    budget. Subclasses implement :meth:`_test`."""

    def __init__(
        self,
        *,
        window: int,
        step: int | None = None,
        false_alarm_rate: float = 1e-5,
        warning_factor: float = 10.0,
    ) -> None:
        super().__init__()
        step = window // 5 if step is None else step
        if window < MIN_WINDOW:
            raise ConfigError(f"window must hold at least {MIN_WINDOW} values, got {window}")
        if not 1 <= step <= window:
            raise ConfigError(f"step must lie between 1 and window ({window}), got {step}")
        if not 0 < false_alarm_rate < 1:
            raise ConfigError(f"false_alarm_rate must lie in (0, 1), got {false_alarm_rate}")
        if warning_factor < 1:
            raise ConfigError(f"warning_factor must be at least 1, got {warning_factor}")
        self.window = window
        self.step = step
        self.false_alarm_rate = false_alarm_rate
        self.alpha = min(0.5, false_alarm_rate * step)
        self.warning_alpha = min(0.5, self.alpha * warning_factor)
        self._buffer = np.empty(window, dtype=np.float64)
        self._filled = 0
        self._position = 0
        self._since_test = 0
        self.last_result: WindowTestResult | None = None

    @property
    def statistic(self) -> float:
        """``1 - p`` of the last test (0 before the first): compare with :attr:`threshold`."""
        return 0.0 if self.last_result is None else 1.0 - self.last_result.p_value

    @property
    def threshold(self) -> float:
        return 1.0 - self.alpha

    def window_values(self) -> NDArray[np.float64]:
        """The values in the window, oldest first."""
        if self._filled < self.window:
            return self._buffer[: self._filled].copy()
        return np.roll(self._buffer, -self._position)

    def _step(self, x: float) -> tuple[bool, bool]:
        self._buffer[self._position] = x
        self._position = (self._position + 1) % self.window
        self._filled = min(self._filled + 1, self.window)
        self._since_test += 1
        if self._filled < self.window or self._since_test < self.step:
            return False, False
        self._since_test = 0
        result = self._test(self._buffer)
        self.last_result = result
        return result.p_value < self.alpha, result.p_value < self.warning_alpha

    def _restart(self) -> None:
        self._filled = 0
        self._position = 0
        self._since_test = 0
        self.last_result = None

    @abstractmethod
    def _test(self, window: NDArray[np.float64]) -> WindowTestResult:
        """Test the window (in no particular order) against the reference."""
