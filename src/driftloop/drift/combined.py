"""Several detectors on one stream, sharing one false-alarm budget.

:class:`CombinedDetector` feeds every value to each of its parts and declares drift (or a
warning) when any part does; after a detection every part starts afresh. Its false-alarm rate
is at most the sum of its parts' (the union bound, whatever their dependence), so a budget ``r``
split into shares ``r * w_i`` with ``sum w_i = 1`` keeps the whole within ``r``.

:func:`mean_and_shape_detector` is the default combination (``algorithm: cusum_shape``): a
CUSUM for a drop of the mean and a shape CUSUM for mass moving into the tails
(:mod:`driftloop.drift.shape`), the budget split ``1 - shape_share`` / ``shape_share``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from driftloop.drift.base import DriftDetector
from driftloop.drift.cusum import CusumDetector
from driftloop.drift.shape import SHAPE_ALLOWANCE, ShapeCusumDetector
from driftloop.errors import ConfigError

SHAPE_SHARE = 0.1
"""The shape CUSUM's share of the false-alarm budget in :func:`mean_and_shape_detector`.
Measured (``benchmarks/detectors.py``): the mean CUSUM's delay grows quickly as its share falls
(half the budget costs it about 19 % on a 0.05 drop), while the shape CUSUM at a tenth of the
budget is still about three times quicker than the best tuned competitor on a shape change."""


class CombinedDetector(DriftDetector):
    """Drift when any of ``parts`` detects it; ``statistic`` is the largest
    ``statistic / threshold`` over the parts, so ``threshold`` is 1."""

    def __init__(self, parts: Sequence[tuple[str, DriftDetector]]) -> None:
        super().__init__()
        if not parts:
            raise ConfigError("a combined detector needs at least one part")
        names = [name for name, _ in parts]
        if len(set(names)) != len(names):
            raise ConfigError(f"the parts of a combined detector need distinct names: {names}")
        self.parts = dict(parts)
        self.fired: tuple[str, ...] = ()
        """The parts that detected drift at the last update (empty when none did)."""

    @property
    def statistic(self) -> float:
        return max(_ratio(part) for part in self.parts.values())

    @property
    def threshold(self) -> float:
        return 1.0

    def _step(self, x: float) -> tuple[bool, bool]:
        warning = False
        fired = []
        for name, part in self.parts.items():
            part.update(x)
            if part.drift_detected:
                fired.append(name)
            warning = warning or part.warning_detected
        self.fired = tuple(fired)
        return bool(fired), warning

    def _restart(self) -> None:
        for part in self.parts.values():
            part.reset()
        self.fired = ()


def _ratio(part: DriftDetector) -> float:
    threshold = part.threshold
    return part.statistic / threshold if threshold > 0 else part.statistic


def mean_and_shape_detector(
    reference: Sequence[float] | NDArray[np.float64],
    *,
    false_alarm_rate: float = 1e-5,
    min_shift: float = 0.05,
    shape_share: float = SHAPE_SHARE,
    shape_allowance: float = SHAPE_ALLOWANCE,
    warning_factor: float = 10.0,
) -> CombinedDetector:
    """A mean-drop CUSUM at ``(1 - shape_share) * false_alarm_rate`` and a shape CUSUM at
    ``shape_share * false_alarm_rate``: together at most ``false_alarm_rate`` per value."""
    if not 0 < shape_share < 1:
        raise ConfigError(f"shape_share must lie in (0, 1), got {shape_share}")
    if not 0 < false_alarm_rate < 1:
        raise ConfigError(f"false_alarm_rate must lie in (0, 1), got {false_alarm_rate}")
    values = np.asarray(reference, dtype=np.float64)
    mean = CusumDetector(
        values,
        false_alarm_rate=(1 - shape_share) * false_alarm_rate,
        min_shift=min_shift,
        warning_factor=warning_factor,
    )
    shape = ShapeCusumDetector(
        values,
        false_alarm_rate=shape_share * false_alarm_rate,
        allowance=shape_allowance,
        warning_factor=warning_factor,
    )
    return CombinedDetector([("mean", mean), ("shape", shape)])
