"""The unit that travels serving → insights → transport → metrics → monitors."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, overload

Aggregation = Literal["avg", "min", "max", "sum", "count", "p50", "p90", "p99"]

SHADOW_TAG = "shadow"
"""Tag (value ``"true"``) of the insights a shadow version reports while it scores production's
traffic beside it: not production traffic, so monitors leave it out unless they filter on it."""

SERVED_TAG = "served"
"""On a shadow pair metric: the version that answered the request the shadow scored too."""
SHADOW_AGREEMENT = "shadow_agreement"
"""Per shadowed text: 1 when the shadow version predicted the class the served one did, else 0."""
SHADOW_CONFIDENCE_GAP = "shadow_confidence_gap"
"""Per shadowed text: the shadow version's top-class confidence minus the served version's."""
SHADOW_CORRECT_GAP = "shadow_correct_gap"
"""Per labelled shadowed text: the shadow version's correctness minus the served one's (-1, 0
or 1), reported when the feedback label arrives."""

TagFilter = Mapping[str, str | None]
"""Which series a query reads: each tag must have the given value, or, for ``None``, be absent
(``{"model": "m", "shadow": None}``: model ``m``'s series, without the shadow version's)."""


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One observation: ``model_confidence=0.93`` at a unix time, tagged ``model=..``."""

    name: str
    value: float
    timestamp: float
    tags: Mapping[str, str] = field(default_factory=dict)
    point_id: str | None = None
    """Idempotency key: a redelivered point with the same id is stored once."""


class PointBatch(Sequence[MetricPoint]):
    """Points held as columns: what the insights SDK hands its transport.

    A batch of reports costs one list append per point and column instead of one
    :class:`MetricPoint` object each; the metric store reads the columns as they are, while
    consumers that want points (a listener, the outbox, Kafka) iterate the batch and get
    :class:`MetricPoint` s made on the fly. Rows share their ``tags`` mappings, so a store can
    resolve each distinct mapping once. The lists are taken as they are, not copied: the
    batch is immutable by convention, like the points it stands for.
    """

    __slots__ = ("names", "point_ids", "tags", "timestamps", "values")

    def __init__(
        self,
        names: list[str],
        values: list[float],
        timestamps: list[float],
        tags: list[Mapping[str, str]],
        point_ids: list[str | None],
    ) -> None:
        if not len(names) == len(values) == len(timestamps) == len(tags) == len(point_ids):
            raise ValueError("a point batch needs columns of one length")
        self.names = names
        self.values = values
        self.timestamps = timestamps
        self.tags = tags
        self.point_ids = point_ids

    @classmethod
    def of(cls, points: Iterable[MetricPoint]) -> PointBatch:
        """``points`` as columns (a :class:`PointBatch` is returned as it is)."""
        if isinstance(points, PointBatch):
            return points
        rows = points if isinstance(points, list | tuple) else list(points)
        return cls(
            [p.name for p in rows],
            [p.value for p in rows],
            [p.timestamp for p in rows],
            [p.tags for p in rows],
            [p.point_id for p in rows],
        )

    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, index: int) -> MetricPoint: ...

    @overload
    def __getitem__(self, index: slice) -> PointBatch: ...

    def __getitem__(self, index: int | slice) -> MetricPoint | PointBatch:
        if isinstance(index, slice):
            return PointBatch(
                self.names[index],
                self.values[index],
                self.timestamps[index],
                self.tags[index],
                self.point_ids[index],
            )
        return MetricPoint(
            self.names[index],
            float(self.values[index]),
            self.timestamps[index],
            self.tags[index],
            self.point_ids[index],
        )

    def __iter__(self) -> Iterator[MetricPoint]:
        for name, value, timestamp, tags, point_id in zip(
            self.names, self.values, self.timestamps, self.tags, self.point_ids, strict=True
        ):
            yield MetricPoint(name, float(value), timestamp, tags, point_id)

    def __repr__(self) -> str:
        return f"PointBatch({len(self)} points)"


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
        filter: TagFilter | None = None,
        group_by: Sequence[str] = (),
    ) -> list[AggregateResult]:
        """Aggregate points with ``start <= timestamp < end``, one result per group."""

    @abstractmethod
    def series(
        self, metric: str, start: float, end: float, step: float, *, filter: TagFilter | None = None
    ) -> list[SeriesPoint]:
        """Bucketed avg/min/max/count, for graphs."""

    @abstractmethod
    def points(
        self, metric: str, start: float, end: float, *, filter: TagFilter | None = None
    ) -> list[MetricPoint]:
        """The raw points with ``start <= timestamp < end``, oldest first (for streaming drift
        detectors); points older than the raw retention are gone."""

    def earliest(
        self, metric: str, start: float, end: float, *, filter: TagFilter | None = None
    ) -> float | None:
        """The timestamp of the oldest point with ``start <= timestamp < end``, or ``None``."""
        found = self.points(metric, start, end, filter=filter)
        return found[0].timestamp if found else None
