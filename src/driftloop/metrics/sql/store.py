"""The store facade: :class:`SqlMetricStore` validates, retries and reads through the parts of
this package (the series catalogue, bulk writes, rollups, query planning, retention)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from driftloop.config import MetricsConfig
from driftloop.database import Database
from driftloop.errors import ConflictError, InvalidInputError
from driftloop.metrics.points import (
    AggregateResult,
    Aggregation,
    MetricPoint,
    MetricStore,
    PointBatch,
    SeriesPoint,
    TagFilter,
)
from driftloop.metrics.sql import planning, retention
from driftloop.metrics.sql.bulk import executemany
from driftloop.metrics.sql.catalog import MAX_NAME, SeriesCatalog
from driftloop.metrics.sql.planning import Buckets, Plan, Resolution
from driftloop.metrics.sql.retention import PurgeResult
from driftloop.metrics.sql.rollups import backfill_hours, update_rollups
from driftloop.metrics.sql.rows import HOUR, MINUTE, WRITE_ATTEMPTS, backend_errors, chunks
from driftloop.metrics.tables import metric_points, metric_rollups, metric_series


class _AlreadyStoredError(Exception):
    """Some points of an optimistically inserted batch were stored before (rolls it back)."""


def _check_point_ids(point_ids: Sequence[str | None]) -> bool:
    """Raise unless every id is ``None`` or a string of 1 to ``MAX_NAME`` characters; True
    when all are strings."""
    if set(map(type, point_ids)) == {str}:
        lengths = set(map(len, cast("Sequence[str]", point_ids)))
        if min(lengths) > 0 and max(lengths) <= MAX_NAME:
            return True
    for index, pid in enumerate(point_ids):
        if pid is not None and (not isinstance(pid, str) or not 0 < len(pid) <= MAX_NAME):
            raise InvalidInputError(
                f"metric point {index}: point_id must be a string of 1 to {MAX_NAME} "
                "characters; nothing of this batch was stored"
            )
    return None not in point_ids


def _columns(batch: PointBatch) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The batch's values and timestamps as arrays, checked to be finite numbers."""
    count = len(batch)
    try:
        values = np.array(batch.values, dtype=np.float64)
        stamps = np.array(batch.timestamps, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"metric point values and timestamps must be numbers: {exc}"
        ) from exc
    if values.shape != (count,) or stamps.shape != (count,):
        raise InvalidInputError("metric point values and timestamps must be numbers")
    bad = ~(np.isfinite(values) & np.isfinite(stamps))
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise InvalidInputError(
            f"metric point {index} ({batch.names[index]}) has a non-finite value or "
            f"timestamp ({batch.values[index]!r} at {batch.timestamps[index]!r}); "
            "nothing of this batch was stored"
        )
    return values, stamps


class SqlMetricStore(MetricStore):
    """:class:`MetricStore` on a :class:`~driftloop.database.Database`.

    ``raw_retention`` and ``rollup_retention`` (seconds) are applied by :meth:`purge`;
    windows longer than ``raw_query_limit`` seconds are answered from the rollups.
    """

    def __init__(
        self,
        database: Database,
        *,
        raw_retention: float,
        rollup_retention: float,
        raw_query_limit: float = 3600.0,
    ) -> None:
        if raw_retention <= 0 or rollup_retention <= 0:
            raise InvalidInputError(
                f"metric retentions must be positive (raw_retention={raw_retention}, "
                f"rollup_retention={rollup_retention})"
            )
        if raw_query_limit < MINUTE:
            raise InvalidInputError("raw_query_limit must be at least 60 seconds")
        self.database = database
        self.engine = database.engine
        self.raw_retention = float(raw_retention)
        self.rollup_retention = float(rollup_retention)
        self.raw_query_limit = float(raw_query_limit)
        self._catalog = SeriesCatalog(database)
        self._hour_rollups_ready = False

    @classmethod
    def from_config(cls, database: Database, config: MetricsConfig) -> SqlMetricStore:
        """The store with ``metrics.raw_retention`` and ``metrics.rollup_retention`` applied."""
        return cls(
            database, raw_retention=config.raw_retention, rollup_retention=config.rollup_retention
        )

    # ------------------------------------------------------------------ writing

    def write(self, points: Sequence[MetricPoint]) -> int:
        if not points:
            return 0
        # Columns all the way (see PointBatch): a batch from the SDK is read without making one
        # object per point, and every per-point step below runs in C (numpy, map, zip, set).
        batch = PointBatch.of(points)
        values, stamps = _columns(batch)
        point_ids = batch.point_ids
        all_strings = _check_point_ids(point_ids)
        series_ids = self._catalog.resolve(batch.names, batch.tags)
        self._ensure_hour_rollups()
        # A batch whose points all carry distinct ids is inserted skipping stored ids and kept
        # if the driver counts every row as new, as it almost always is; a redelivery (some
        # ids stored before) rolls back and takes the path that looks the stored ids up first.
        optimistic = (
            self.engine.dialect.supports_sane_multi_rowcount
            and all_strings
            and len(set(point_ids)) == len(batch)
        )
        collisions = 0
        with backend_errors(self.database):
            while True:
                try:
                    with self.engine.begin() as connection:
                        return self._write_batch(
                            connection,
                            np.asarray(series_ids, dtype=np.int64),
                            stamps,
                            values,
                            point_ids,
                            optimistic=optimistic,
                        )
                except _AlreadyStoredError:
                    optimistic = False
                except SqlIntegrityError as exc:
                    collisions += 1
                    if collisions == WRITE_ATTEMPTS:
                        raise ConflictError(
                            f"metric write kept colliding with concurrent writers: {exc.orig}"
                        ) from exc

    def _write_batch(
        self,
        connection: Connection,
        series_ids: NDArray[np.int64],
        stamps: NDArray[np.float64],
        values: NDArray[np.float64],
        point_ids: list[str | None],
        *,
        optimistic: bool = False,
    ) -> int:
        if optimistic:
            inserted = self._insert_points(
                connection, series_ids, stamps, values, point_ids, skip_stored=True
            )
            if inserted != len(point_ids):
                raise _AlreadyStoredError
            update_rollups(connection, series_ids, stamps, values)
            return inserted
        keep = self._not_stored(connection, point_ids)
        if not keep.all():
            series_ids, stamps, values = series_ids[keep], stamps[keep], values[keep]
            point_ids = [pid for pid, kept in zip(point_ids, keep, strict=True) if kept]
        if len(point_ids) == 0:
            return 0
        self._insert_points(connection, series_ids, stamps, values, point_ids)
        update_rollups(connection, series_ids, stamps, values)
        return len(point_ids)

    @staticmethod
    def _not_stored(connection: Connection, point_ids: list[str | None]) -> NDArray[np.bool_]:
        """Which points to write: all but those whose id is stored or repeats an earlier one."""
        keep = np.ones(len(point_ids), dtype=bool)
        with_ids = [(i, pid) for i, pid in enumerate(point_ids) if pid is not None]
        if with_ids:
            seen: set[str] = set()
            for chunk in chunks([pid for _, pid in with_ids]):
                rows = connection.execute(
                    sa.select(metric_points.c.point_id).where(metric_points.c.point_id.in_(chunk))
                )
                seen.update(row[0] for row in rows)
            for index, pid in with_ids:
                if pid in seen:
                    keep[index] = False
                else:
                    seen.add(pid)
        return keep

    @staticmethod
    def _insert_points(
        connection: Connection,
        series_ids: NDArray[np.int64],
        stamps: NDArray[np.float64],
        values: NDArray[np.float64],
        point_ids: list[str | None],
        *,
        skip_stored: bool = False,
    ) -> int:
        """Insert the points; with ``skip_stored``, points whose id is stored already are
        skipped (``ON CONFLICT (point_id) DO NOTHING``). The number of rows inserted."""
        rows = list(
            zip(series_ids.tolist(), stamps.tolist(), values.tolist(), point_ids, strict=True)
        )
        return executemany(connection, "points_skipping_stored" if skip_stored else "points", rows)

    # ------------------------------------------------------------------ reading

    def query(
        self,
        metric: str,
        aggregation: Aggregation,
        start: float,
        end: float,
        *,
        filter: TagFilter | None = None,
        group_by: Sequence[str] = (),
        resolution: Resolution = "auto",
    ) -> list[AggregateResult]:
        """Aggregate points with ``start <= timestamp < end``, one result per group.

        ``resolution="raw"`` forces raw points, ``"rollup"`` forces whole hours from the hour
        rollups, whole minutes from the minute rollups and raw points for the partial minutes
        at the edges. An ungrouped query always answers one result (``value`` is ``None`` when
        no point matched, ``0`` for ``count``); a grouped one answers the groups that have
        points. Series without one of the ``group_by`` tags belong to no group.
        """
        if aggregation not in planning.AGGREGATIONS:
            raise InvalidInputError(
                f"unknown aggregation {aggregation!r}; expected one of "
                f"{', '.join(planning.AGGREGATIONS)}"
            )
        if not end > start:
            raise InvalidInputError(f"query window is empty: start {start} >= end {end}")
        group_by = tuple(group_by)
        self._ensure_hour_rollups()
        with backend_errors(self.database), self.engine.connect() as connection:
            series = self._catalog.matching(connection, metric, filter)
            groups = planning.group_series(series, group_by)
            horizons = retention.read_horizons(connection)
            if planning.use_rollups(start, end, resolution, horizons, self.raw_query_limit):
                plan = planning.plan_window(start, end, horizons)
            else:
                plan = Plan(raw=((start, end),))
            if aggregation in planning.QUANTILES:
                values = planning.read_quantiles(
                    connection, groups, plan, planning.QUANTILES[aggregation]
                )
            else:
                stats = planning.read_stats(connection, groups, plan)
                values = {key: (s.value(aggregation), s.count) for key, s in stats.items()}
        results = [
            AggregateResult(group=dict(zip(group_by, key, strict=True)), value=value, count=count)
            for key, (value, count) in sorted(values.items())
            if count > 0
        ]
        if not group_by and not results:
            results = [AggregateResult({}, 0.0 if aggregation == "count" else None, 0)]
        return results

    def series(
        self, metric: str, start: float, end: float, step: float, *, filter: TagFilter | None = None
    ) -> list[SeriesPoint]:
        """Buckets ``[start + k·step, start + (k+1)·step)`` that hold points. With a whole-minute
        ``step`` and a minute-aligned ``start`` over a long or old range, whole minutes come from
        the minute rollups (whole hours from the hour rollups when ``step`` and ``start`` are
        whole hours too)."""
        if step <= 0:
            raise InvalidInputError(f"series step must be positive, got {step}")
        if not end > start:
            raise InvalidInputError(f"series window is empty: start {start} >= end {end}")
        buckets = Buckets(start, end, step)
        self._ensure_hour_rollups()
        with backend_errors(self.database), self.engine.connect() as connection:
            ids = sorted(self._catalog.matching(connection, metric, filter))
            plan = Plan(raw=((start, end),))
            horizons = retention.read_horizons(connection)
            if (
                step % MINUTE == 0
                and start % MINUTE == 0
                and planning.use_rollups(start, end, "auto", horizons, self.raw_query_limit)
            ):
                hourly = step % HOUR == 0 and start % HOUR == 0
                plan = planning.plan_window(start, end, horizons, hours=hourly)
            buckets.read(connection, ids, plan)
        return buckets.points()

    def points(
        self, metric: str, start: float, end: float, *, filter: TagFilter | None = None
    ) -> list[MetricPoint]:
        p = metric_points.c
        found: list[MetricPoint] = []
        with backend_errors(self.database), self.engine.connect() as connection:
            series = self._catalog.matching(connection, metric, filter)
            for chunk in chunks(sorted(series)):
                rows = connection.execute(
                    sa.select(p.series_id, p.timestamp, p.value, p.point_id).where(
                        p.series_id.in_(chunk), p.timestamp >= start, p.timestamp < end
                    )
                )
                found.extend(
                    MetricPoint(metric, float(v), float(t), series[int(sid)], pid)
                    for sid, t, v, pid in rows
                )
        found.sort(key=lambda point: point.timestamp)
        return found

    def earliest(
        self, metric: str, start: float, end: float, *, filter: TagFilter | None = None
    ) -> float | None:
        """The oldest point's timestamp in the window; from the rollups (to the minute) where
        raw points are already purged."""
        p, r = metric_points.c, metric_rollups.c
        with self.engine.connect() as connection:
            ids = sorted(self._catalog.matching(connection, metric, filter))
            raw_horizon, _ = retention.read_horizons(connection)
            best: float | None = None
            for chunk in chunks(ids):
                if start < raw_horizon:
                    minute = connection.execute(
                        sa.select(sa.func.min(r.minute)).where(
                            r.series_id.in_(chunk),
                            r.minute >= math.floor(start / MINUTE),
                            r.minute < math.ceil(end / MINUTE),
                        )
                    ).scalar()
                    if minute is not None:
                        candidate = max(float(minute) * MINUTE, start)
                        best = candidate if best is None else min(best, candidate)
                        continue
                found = connection.execute(
                    sa.select(sa.func.min(p.timestamp)).where(
                        p.series_id.in_(chunk), p.timestamp >= start, p.timestamp < end
                    )
                ).scalar()
                if found is not None:
                    best = float(found) if best is None else min(best, float(found))
        return best

    def metric_names(self) -> list[str]:
        """Every metric name with at least one series."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(metric_series.c.name).distinct()).scalars()
            return sorted(str(name) for name in rows)

    # ------------------------------------------------------------------ upkeep

    def purge(self, now: float) -> PurgeResult:
        """Delete raw points older than ``now - raw_retention``, minute rollups whose minute
        ended before ``now - rollup_retention`` and hour rollups whose hour began before that
        minute; later queries over those ranges use what is left."""
        self._ensure_hour_rollups()
        with backend_errors(self.database), self.engine.begin() as connection:
            return retention.purge(
                connection, now - self.raw_retention, now - self.rollup_retention
            )

    def _ensure_hour_rollups(self) -> None:
        """Backfill the hour rollups once per store (see :func:`backfill_hours`)."""
        if not self._hour_rollups_ready:
            backfill_hours(self.database)
            self._hour_rollups_ready = True
