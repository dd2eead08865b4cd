"""One-sided CUSUM for a drop in the mean of a metric (model confidence) against a reference.

Values are standardised by the reference mean and standard deviation; each one adds
``(mean - x) / std - k`` to the statistic, which never falls below zero. ``k`` is half the
smallest drop worth detecting (``min_shift``) in standard deviations, the choice that makes the
detector quickest for that drop (Page 1954; Lorden 1971). The alarm threshold comes from the
target false-alarm rate, calibrated on the empirical reference (see
:mod:`driftloop.drift.calibration`).
"""

from __future__ import annotations

from driftloop.drift.calibration import CalibratedMeanDetector


class CusumDetector(CalibratedMeanDetector):
    """Detects a drop of at least about ``min_shift`` in the mean of the stream.

    ``false_alarm_rate`` is per sample: ``1e-5`` means one false alarm per 100,000 values on
    a stream that behaves like the reference. The warning level fires ``warning_factor`` times
    as often.
    """

    _s: float
    _since: int
    _last_zero: int

    @property
    def statistic(self) -> float:
        return self._s

    @property
    def threshold(self) -> float:
        return self._h

    @property
    def since_change(self) -> int:
        """Values since the estimated start of the drop (the statistic last left zero)."""
        return self._since - self._last_zero

    def _step(self, x: float) -> tuple[bool, bool]:
        self._since += 1
        s = self._s + (self._mean - x) * self._scale - self._k
        if s <= 0.0:
            s = 0.0
            self._last_zero = self._since
        self._s = s
        return s > self._h, s > self._h_warning

    def _restart(self) -> None:
        self._s = 0.0
        self._since = 0
        self._last_zero = 0
