"""The one interface every drift detector implements (river-style).

``update(x)`` feeds one value; right after the update that detected, ``drift_detected`` (or
``warning_detected``) is true; the next ``update`` starts a fresh statistic against the same
reference, as river's detectors do. ``reset()`` does the same at once and zeroes ``n_seen``.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod

from driftloop.errors import InvalidInputError


class DriftDetector(ABC):
    """A streaming detector of a change against a reference."""

    def __init__(self) -> None:
        self._drift_detected = False
        self._warning_detected = False
        self._n_seen = 0

    @property
    def drift_detected(self) -> bool:
        """True right after the update that detected a drift."""
        return self._drift_detected

    @property
    def warning_detected(self) -> bool:
        """True right after an update that crossed the warning level (also true on drift)."""
        return self._warning_detected

    @property
    def n_seen(self) -> int:
        """Values fed since construction or the last :meth:`reset`."""
        return self._n_seen

    @property
    @abstractmethod
    def statistic(self) -> float:
        """The current value of the detection statistic (for graphs and messages)."""

    @property
    @abstractmethod
    def threshold(self) -> float:
        """The value of :attr:`statistic` past which a drift is declared."""

    def update(self, x: float) -> None:
        value = _finite(x)
        if self._drift_detected:
            self._restart()
        self._n_seen += 1
        drift, warning = self._step(value)
        self._drift_detected = drift
        self._warning_detected = warning or drift

    def reset(self) -> None:
        """Forget every value seen (the reference stays)."""
        self._restart()
        self._drift_detected = False
        self._warning_detected = False
        self._n_seen = 0

    @abstractmethod
    def _step(self, x: float) -> tuple[bool, bool]:
        """Fold in one value; return (drift, warning)."""

    @abstractmethod
    def _restart(self) -> None:
        """Clear the statistic so that detection starts afresh."""


def _finite(x: object) -> float:
    if type(x) is float and math.isfinite(x):
        return x
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        raise InvalidInputError(f"a drift detector takes a number, got {x!r}")
    value = float(x)
    if not math.isfinite(value):
        raise InvalidInputError(f"a drift detector takes finite numbers, got {value}")
    return value
