"""Retention: purging raw points and rollups past their horizons, and the horizons themselves
(kept in ``metric_store_state`` so that queries know which ranges only the rollups still hold)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from driftloop.metrics.sql.rows import MINUTE, PER_HOUR, chunks
from driftloop.metrics.tables import (
    metric_hour_rollups,
    metric_points,
    metric_rollup_bins,
    metric_rollups,
    metric_series,
    metric_store_state,
)

RAW_HORIZON = "raw_horizon"
ROLLUP_HORIZON = "rollup_horizon"
_HORIZONS = sa.select(metric_store_state.c.key, metric_store_state.c.value).where(
    metric_store_state.c.key.in_((RAW_HORIZON, ROLLUP_HORIZON))
)


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What :meth:`SqlMetricStore.purge` deleted, and the horizons it applied."""

    raw_points: int
    rollups: int
    raw_horizon: float
    rollup_horizon: float
    hour_rollups: int = 0


def read_horizons(connection: Connection) -> tuple[float, float]:
    """The raw and the rollup horizon: what lies before them was purged (``-inf``: nothing)."""
    rows = dict(connection.execute(_HORIZONS).all())
    return float(rows.get(RAW_HORIZON, -math.inf)), float(rows.get(ROLLUP_HORIZON, -math.inf))


def purge(connection: Connection, raw_horizon: float, rollup_horizon: float) -> PurgeResult:
    """Delete raw points older than ``raw_horizon``, minute rollups whose minute ended before
    ``rollup_horizon`` and hour rollups whose hour began before that minute, and move the
    stored horizons forward (never back)."""
    last_minute = math.floor(rollup_horizon / MINUTE)  # minutes < this ended by the horizon
    raw_deleted = 0
    all_series = connection.execute(sa.select(metric_series.c.series_id)).scalars()
    for chunk in chunks(sorted(all_series)):
        raw_deleted += connection.execute(
            metric_points.delete().where(
                metric_points.c.series_id.in_(chunk), metric_points.c.timestamp < raw_horizon
            )
        ).rowcount
    rollups_deleted = connection.execute(
        metric_rollups.delete().where(metric_rollups.c.minute < last_minute)
    ).rowcount
    connection.execute(metric_rollup_bins.delete().where(metric_rollup_bins.c.minute < last_minute))
    # hours that began before that minute are never read again (see planning.plan_window)
    first_hour = -(-last_minute // PER_HOUR)
    hours_deleted = connection.execute(
        metric_hour_rollups.delete().where(metric_hour_rollups.c.hour < first_hour)
    ).rowcount
    current_raw, current_rollup = read_horizons(connection)
    _advance_horizon(connection, RAW_HORIZON, raw_horizon, current_raw)
    _advance_horizon(connection, ROLLUP_HORIZON, rollup_horizon, current_rollup)
    return PurgeResult(
        raw_points=int(raw_deleted),
        rollups=int(rollups_deleted),
        raw_horizon=max(raw_horizon, current_raw),
        rollup_horizon=max(rollup_horizon, current_rollup),
        hour_rollups=int(hours_deleted),
    )


def _advance_horizon(connection: Connection, key: str, value: float, current: float) -> None:
    if value <= current:
        return
    updated = connection.execute(
        metric_store_state.update().where(metric_store_state.c.key == key).values(value=value)
    ).rowcount
    if not updated:
        connection.execute(metric_store_state.insert().values(key=key, value=value))
