"""What the engine needs from a streaming drift detector (river-style); every detector of
:mod:`driftloop.drift` fits it, and so does any object with these members."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from driftloop.config import MonitorConfig
from driftloop.predictors import ReferenceProfile


@runtime_checkable
class DriftDetector(Protocol):
    """``update(x)`` one value at a time; the flags describe the update just made."""

    def update(self, x: float) -> None: ...

    @property
    def drift_detected(self) -> bool: ...

    @property
    def warning_detected(self) -> bool: ...

    def reset(self) -> None: ...


DetectorFactory = Callable[[MonitorConfig, ReferenceProfile | None], DriftDetector]
"""Builds the detector of a ``type: drift`` monitor for one group and its reference."""

__all__ = ["DetectorFactory", "DriftDetector"]
