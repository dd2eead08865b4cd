"""Label-free accuracy estimate from calibrated confidence (CBPE-style).

For a calibrated classifier, a prediction made with confidence ``c`` is right with probability
``c``; the expected accuracy of a window is the mean confidence. Given the confidences, the
number of right predictions is a sum of independent Bernoulli(c_i) draws, so the realised
accuracy has standard deviation ``sqrt(sum c_i (1 - c_i)) / n``. The interval adds the model's
calibration error (its ECE on the validation split) on both sides, since calibration is never
perfect and no amount of data shrinks that bias.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from driftloop.drift.accuracy import AccuracyEstimate, z_value
from driftloop.errors import ConfigError, InvalidInputError


def expected_accuracy(
    confidences: Sequence[float] | NDArray[np.float64],
    *,
    level: float = 0.95,
    calibration_error: float = 0.0,
) -> AccuracyEstimate:
    """The accuracy a calibrated model should have on predictions made with these confidences."""
    c = np.asarray(confidences, dtype=np.float64)
    if c.size == 0:
        raise InvalidInputError("no confidences to estimate accuracy from")
    if not np.all((c >= 0) & (c <= 1)):
        raise InvalidInputError("confidences must lie in [0, 1]")
    if calibration_error < 0:
        raise ConfigError(f"calibration_error cannot be negative, got {calibration_error}")
    n = int(c.size)
    mean = float(c.mean())
    half = z_value(level) * math.sqrt(float(np.sum(c * (1 - c)))) / n + calibration_error
    return AccuracyEstimate(mean, max(0.0, mean - half), min(1.0, mean + half), n, level)


class ConfidenceAccuracyEstimator:
    """Streaming CBPE: the expected accuracy over the last ``window`` confidences."""

    def __init__(
        self, window: int = 500, *, level: float = 0.95, calibration_error: float = 0.0
    ) -> None:
        if window < 1:
            raise ConfigError(f"window must be positive, got {window}")
        z_value(level)
        if calibration_error < 0:
            raise ConfigError(f"calibration_error cannot be negative, got {calibration_error}")
        self.window = window
        self.level = level
        self.calibration_error = calibration_error
        self._values: deque[float] = deque(maxlen=window)

    @property
    def n_seen(self) -> int:
        return len(self._values)

    def update(self, confidence: float) -> None:
        value = float(confidence)
        if not 0.0 <= value <= 1.0:
            raise InvalidInputError(f"a confidence lies in [0, 1], got {confidence!r}")
        self._values.append(value)

    def estimate(self) -> AccuracyEstimate:
        return expected_accuracy(
            np.fromiter(self._values, dtype=np.float64),
            level=self.level,
            calibration_error=self.calibration_error,
        )

    def reset(self) -> None:
        self._values.clear()
