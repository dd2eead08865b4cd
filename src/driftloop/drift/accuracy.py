"""What an accuracy estimate is: a value with a confidence interval over some predictions."""

from __future__ import annotations

from dataclasses import dataclass

from scipy import stats

from driftloop.errors import ConfigError


@dataclass(frozen=True)
class AccuracyEstimate:
    """Accuracy over ``n`` predictions, with a ``level`` confidence interval [low, high]."""

    accuracy: float
    low: float
    high: float
    n: int
    level: float

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def z_value(level: float) -> float:
    """The two-sided normal quantile for a confidence level (1.96 for 0.95)."""
    if not 0 < level < 1:
        raise ConfigError(f"a confidence level lies in (0, 1), got {level}")
    return float(stats.norm.ppf(0.5 + level / 2.0))
