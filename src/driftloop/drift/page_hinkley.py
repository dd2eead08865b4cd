"""Page-Hinkley test for a drop in the mean of a metric against a reference.

The textbook form: ``U_t = sum (x_i - mean) / std + k`` over the values so far, ``M_t`` its
running maximum; a drop is declared when ``M_t - U_t`` exceeds the threshold. With the mean
known from the reference, ``M_t - U_t`` equals the one-sided CUSUM statistic, so the same
calibration (:mod:`driftloop.drift.calibration`) gives it the same false-alarm rate. The test
also dates the change: the drop began right after the time of the maximum.
"""

from __future__ import annotations

from driftloop.drift.calibration import CalibratedMeanDetector


class PageHinkleyDetector(CalibratedMeanDetector):
    """Detects a drop of at least about ``min_shift`` in the mean; ``false_alarm_rate`` per
    sample, as for :class:`~driftloop.drift.cusum.CusumDetector`."""

    _sum: float
    _max: float
    _t: int
    _t_max: int

    @property
    def statistic(self) -> float:
        return self._max - self._sum

    @property
    def threshold(self) -> float:
        return self._h

    @property
    def since_change(self) -> int:
        """Values since the estimated start of the drop (the maximum of the cumulative sum)."""
        return self._t - self._t_max

    def _step(self, x: float) -> tuple[bool, bool]:
        self._t += 1
        self._sum += (x - self._mean) * self._scale + self._k
        if self._sum >= self._max:
            self._max = self._sum
            self._t_max = self._t
        gap = self._max - self._sum
        return gap > self._h, gap > self._h_warning

    def _restart(self) -> None:
        self._sum = 0.0
        self._max = 0.0
        self._t = 0
        self._t_max = 0
