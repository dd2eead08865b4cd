"""A sequential detector for a change of *shape*: mass moving into the tails of the reference.

A mean-drop CUSUM cannot see a change that keeps the mean (a model that becomes at once more
often unsure and more often overconfident on shifted inputs). This detector ranks each value
in the reference sample, ``u = F_ref(x)`` (mid-ranks, so ties and values outside the reference
are handled), and scores how far into either tail it falls: ``t = -ln(2 * min(u, 1 - u))``. On
a stream that behaves like the reference, ``u`` is uniform and ``t`` is exponential with mean 1
whatever the metric's distribution (a rank statistic: nothing about the metric is assumed); mass
moving into either tail raises its mean. A one-sided CUSUM on ``t`` (standardised by the
null scores, allowance ``k = allowance`` standard deviations) detects the rise, with the
threshold calibrated for ``false_alarm_rate`` per value exactly as the mean CUSUM's is (see
:mod:`driftloop.drift.calibration`: the empirical adjustment coefficient and Siegmund's
approximation, checked by bootstrap simulation, with the same reference-uncertainty margin).
The null scores are those a *new* value takes, not the reference's own: a new value from the
reference's law falls into each of the ``n + 1`` gaps around the ``n`` sorted reference values
with probability ``1 / (n + 1)`` (exchangeability, whatever the law), so its score is
``-ln(2 * min(u, 1 - u))`` at ``u = (j + 0.5) / (n + 1)``, ``j = 0..n``, each equally likely. That
includes the two outermost gaps (score ``ln(n + 1)``: beyond the reference's extremes), which the
reference's own scores (``u = i / (n + 1)``) lack; calibrating on those under-stated the upper
tail of the scores and with it the false-alarm rate, several-fold for a small reference.
``t`` is bounded by ``ln(n + 1)`` for an ``n``-value reference, so one outlier cannot alarm.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from driftloop.drift.base import DriftDetector
from driftloop.drift.calibration import MIN_REFERENCE, SequentialCalibration
from driftloop.drift.cusum import CusumDetector
from driftloop.errors import ConfigError, InvalidInputError

SHAPE_ALLOWANCE = 0.25
"""Default ``k``: half the smallest rise in the mean tail score worth detecting (0.5 standard
deviations), in standard deviations of the score."""


class TailScore:
    """``x -> -ln(2 * min(u, 1 - u))`` with ``u`` the mid-rank of ``x`` in the reference."""

    def __init__(self, reference: Sequence[float] | NDArray[np.float64]) -> None:
        values = np.asarray(reference, dtype=np.float64)
        if values.ndim != 1 or len(values) < MIN_REFERENCE:
            raise InvalidInputError(
                f"a shape detector needs at least {MIN_REFERENCE} reference values, "
                f"got {values.size}"
            )
        if not np.all(np.isfinite(values)):
            raise InvalidInputError("the reference holds values that are not finite numbers")
        self._sorted = [float(v) for v in np.sort(values)]
        self._n = len(self._sorted)

    def __call__(self, x: float) -> float:
        rank = 0.5 * (bisect_left(self._sorted, x) + bisect_right(self._sorted, x)) + 0.5
        u = rank / (self._n + 1)
        return -math.log(2.0 * min(u, 1.0 - u))

    def scores(self, values: Sequence[float] | NDArray[np.float64]) -> NDArray[np.float64]:
        return np.asarray([self(float(v)) for v in values], dtype=np.float64)

    def null_scores(self) -> NDArray[np.float64]:
        """The ``n + 1`` equally likely scores of a new value from the reference's law (one per
        gap between sorted reference values, the two outer gaps included)."""
        u = (np.arange(self._n + 1) + 0.5) / (self._n + 1)
        return -np.log(2.0 * np.minimum(u, 1.0 - u))


class ShapeCusumDetector(DriftDetector):
    """Detects mass moving into either tail of the reference distribution (a change of shape,
    with or without a change of mean); ``false_alarm_rate`` per value, as for
    :class:`~driftloop.drift.cusum.CusumDetector`."""

    def __init__(
        self,
        reference: Sequence[float] | NDArray[np.float64],
        *,
        false_alarm_rate: float = 1e-5,
        allowance: float = SHAPE_ALLOWANCE,
        warning_factor: float = 10.0,
        margin_se: float = 1.0,
    ) -> None:
        super().__init__()
        if not allowance > 0:
            raise ConfigError(f"allowance must be positive, got {allowance}")
        self.score = TailScore(reference)
        null_scores = self.score.null_scores()
        if len(set(self.score.scores(reference).tolist())) < 2:
            raise InvalidInputError(
                "the reference values are all equal: a shape detector needs some spread"
            )
        spread = float(null_scores.std(ddof=1))
        # The mean CUSUM looks for a drop; a rise of the score is a drop of its negative, and
        # ``min_shift = 2 k std`` makes its allowance ``k`` standard deviations of the score.
        self._inner = CusumDetector(
            -null_scores,
            false_alarm_rate=false_alarm_rate,
            min_shift=2.0 * allowance * spread,
            warning_factor=warning_factor,
            margin_se=margin_se,
        )
        self.false_alarm_rate = false_alarm_rate
        self.allowance = allowance

    @property
    def calibration(self) -> SequentialCalibration:
        """The CUSUM calibration on the reference's tail scores (mean, std, threshold...)."""
        return self._inner.calibration

    @property
    def statistic(self) -> float:
        return self._inner.statistic

    @property
    def threshold(self) -> float:
        return self._inner.threshold

    def _step(self, x: float) -> tuple[bool, bool]:
        self._inner.update(-self.score(x))
        return self._inner.drift_detected, self._inner.warning_detected

    def _restart(self) -> None:
        self._inner.reset()
