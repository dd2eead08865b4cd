"""Realised accuracy from feedback labels: (predicted, true) pairs, Wilson score interval."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Iterable

from driftloop.drift.accuracy import AccuracyEstimate, z_value
from driftloop.errors import ConfigError, InvalidInputError


def wilson_interval(right: int, n: int, level: float = 0.95) -> AccuracyEstimate:
    """Accuracy ``right / n`` with its Wilson score interval (sound near 0 and 1)."""
    if n <= 0:
        raise InvalidInputError("no labelled predictions to measure accuracy on")
    if not 0 <= right <= n:
        raise InvalidInputError(f"right ({right}) must lie between 0 and n ({n})")
    z = z_value(level)
    p = right / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return AccuracyEstimate(p, max(0.0, centre - half), min(1.0, centre + half), n, level)


class RealizedAccuracyEstimator:
    """Accuracy over the last ``window`` labelled predictions (``None``: all of them)."""

    def __init__(self, window: int | None = None, *, level: float = 0.95) -> None:
        if window is not None and window < 1:
            raise ConfigError(f"window must be positive, got {window}")
        z_value(level)
        self.window = window
        self.level = level
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._right = 0

    @property
    def n_seen(self) -> int:
        return len(self._outcomes)

    def update(self, predicted: Hashable, true: Hashable) -> None:
        right = predicted == true
        if self.window is not None and len(self._outcomes) == self.window:
            self._right -= self._outcomes[0]
        self._outcomes.append(right)
        self._right += right

    def update_many(self, pairs: Iterable[tuple[Hashable, Hashable]]) -> None:
        for predicted, true in pairs:
            self.update(predicted, true)

    def estimate(self) -> AccuracyEstimate:
        return wilson_interval(self._right, len(self._outcomes), self.level)

    def reset(self) -> None:
        self._outcomes.clear()
        self._right = 0
