"""A detector for a model that came without a reference profile: the first ``warmup`` values
of the stream become the reference, then an inner detector built on them takes over.

``reset()`` forgets the learned reference too (a new model version learns a new one).
"""

from __future__ import annotations

from collections.abc import Callable

from driftloop.drift.base import DriftDetector
from driftloop.errors import ConfigError

DetectorFactory = Callable[[list[float]], DriftDetector]


class SelfReferencedDetector(DriftDetector):
    """Collects ``warmup`` values as the reference, then delegates to ``factory(reference)``."""

    def __init__(self, factory: DetectorFactory, *, warmup: int = 2_000) -> None:
        super().__init__()
        if warmup < 1:
            raise ConfigError(f"warmup must be positive, got {warmup}")
        self.factory = factory
        self.warmup = warmup
        self._reference: list[float] = []
        self.inner: DriftDetector | None = None

    @property
    def learning(self) -> bool:
        """Still collecting the reference (no detection yet)."""
        return self.inner is None

    @property
    def statistic(self) -> float:
        return 0.0 if self.inner is None else self.inner.statistic

    @property
    def threshold(self) -> float:
        return float("inf") if self.inner is None else self.inner.threshold

    def _step(self, x: float) -> tuple[bool, bool]:
        if self.inner is None:
            self._reference.append(x)
            if len(self._reference) >= self.warmup:
                self.inner = self.factory(self._reference)
            return False, False
        self.inner.update(x)
        return self.inner.drift_detected, self.inner.warning_detected

    def _restart(self) -> None:
        """After a detection the inner detector restarts itself on its next update."""

    def reset(self) -> None:
        super().reset()
        self._reference = []
        self.inner = None
