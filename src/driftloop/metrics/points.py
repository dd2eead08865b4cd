"""The unit that travels serving → insights → transport → metrics → monitors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Aggregation = Literal["avg", "min", "max", "sum", "count", "p50", "p90", "p99"]


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One observation: ``model_confidence=0.93`` at a unix time, tagged ``model=..``."""

    name: str
    value: float
    timestamp: float
    tags: Mapping[str, str] = field(default_factory=dict)
    point_id: str | None = None
    """Idempotency key: a redelivered point with the same id is stored once."""


@dataclass(frozen=True, slots=True)
class AggregateResult:
    """One group's aggregate over a window."""

    group: Mapping[str, str]
    value: float | None
    count: int


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One bucket of a time series (for graphs)."""

    timestamp: float
    avg: float
    min: float
    max: float
    count: int


class MetricStore(ABC):
    """Stores points and answers aggregate queries over time windows."""

    @abstractmethod
    def write(self, points: Sequence[MetricPoint]) -> int:
        """Store points; returns how many were new (duplicates by ``point_id`` are skipped)."""

    @abstractmethod
    def query(
        self,
        metric: str,
        aggregation: Aggregation,
        start: float,
        end: float,
        *,
        filter: Mapping[str, str] | None = None,
        group_by: Sequence[str] = (),
    ) -> list[AggregateResult]:
        """Aggregate points with ``start <= timestamp < end``, one result per group."""

    @abstractmethod
    def series(
        self,
        metric: str,
        start: float,
        end: float,
        step: float,
        *,
        filter: Mapping[str, str] | None = None,
    ) -> list[SeriesPoint]:
        """Bucketed avg/min/max/count, for graphs."""

    @abstractmethod
    def points(
        self,
        metric: str,
        start: float,
        end: float,
        *,
        filter: Mapping[str, str] | None = None,
    ) -> list[MetricPoint]:
        """The raw points with ``start <= timestamp < end``, oldest first (for streaming drift
        detectors); points older than the raw retention are gone."""

    def earliest(
        self,
        metric: str,
        start: float,
        end: float,
        *,
        filter: Mapping[str, str] | None = None,
    ) -> float | None:
        """The timestamp of the oldest point with ``start <= timestamp < end``, or ``None``."""
        found = self.points(metric, start, end, filter=filter)
        return found[0].timestamp if found else None
