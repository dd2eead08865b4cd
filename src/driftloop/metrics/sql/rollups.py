"""Rollup upkeep: every write adds its points to their 1-minute and 1-hour rollups (count, sum,
min, max and a log-bin sketch, see :mod:`driftloop.metrics.sketch`) in the same transaction, so
rollups are always up to date, late points included; and the one-time backfill of the hour
rollups from the minute rollups for a database written before hour rollups existed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from driftloop.database import Database
from driftloop.errors import ConflictError
from driftloop.metrics.sketch import encode_bins, pack_sketch, unpack_sketch
from driftloop.metrics.sql.bulk import executemany, merged_stats
from driftloop.metrics.sql.rows import (
    MINUTE,
    PER_HOUR,
    WRITE_ATTEMPTS,
    backend_errors,
    chunks,
    matrix,
)
from driftloop.metrics.tables import (
    metric_hour_rollups,
    metric_rollup_bins,
    metric_rollups,
    metric_series,
    metric_store_state,
)

HOUR_ROLLUPS = "hour_rollups"
"""State key set once the hour rollups hold every minute rollup (see :func:`backfill_hours`)."""


@dataclass(frozen=True, slots=True)
class _SortedBatch:
    """A write batch sorted by (series, minute, bin)."""

    series_ids: NDArray[np.int64]
    minutes: NDArray[np.int64]
    values: NDArray[np.float64]
    bins: NDArray[np.int64]


def _runs(*keys: NDArray[np.int64]) -> NDArray[np.intp]:
    """The index where each run of equal keys starts, in arrays sorted by those keys."""
    change = np.zeros(len(keys[0]), dtype=bool)
    change[0] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    return np.flatnonzero(change)


def _aggregate(
    starts: NDArray[np.intp], values: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """count, sum, min and max of every run of ``values`` beginning at ``starts``."""
    counts = np.diff(np.r_[starts, len(values)]).astype(np.int64)
    return (
        counts,
        np.add.reduceat(values, starts),
        np.minimum.reduceat(values, starts),
        np.maximum.reduceat(values, starts),
    )


def update_rollups(
    connection: Connection,
    series_ids: NDArray[np.int64],
    stamps: NDArray[np.float64],
    values: NDArray[np.float64],
) -> None:
    """Add the batch to its minute rollups and, with the same minute-to-hour mapping the
    queries use (``hour = minute // 60``), to its hour rollups; late points update the rows
    that already exist. One sort by (series, minute, bin) serves both."""
    minutes = np.floor(stamps / MINUTE).astype(np.int64)
    bins = encode_bins(values)
    order = np.lexsort((bins, minutes, series_ids))
    batch = _SortedBatch(series_ids[order], minutes[order], values[order], bins[order])
    _update_minute_rollups(connection, batch)
    _update_hour_rollups(connection, batch)


def _update_minute_rollups(connection: Connection, batch: _SortedBatch) -> None:
    """Upsert the batch's (series, minute) rollups and (series, minute, bin) counts: one
    statement each, no read of the rows that already exist."""
    groups = _runs(batch.series_ids, batch.minutes)
    count, total, lowest, highest = _aggregate(groups, batch.values)
    bin_runs = _runs(batch.series_ids, batch.minutes, batch.bins)
    bin_counts = np.diff(np.r_[bin_runs, len(batch.bins)])
    rollups = list(
        zip(
            batch.series_ids[groups].tolist(),
            batch.minutes[groups].tolist(),
            count.tolist(),
            total.tolist(),
            lowest.tolist(),
            highest.tolist(),
            strict=True,
        )
    )
    executemany(connection, "minute_rollups", rollups)
    bins = list(
        zip(
            batch.series_ids[bin_runs].tolist(),
            batch.minutes[bin_runs].tolist(),
            batch.bins[bin_runs].tolist(),
            bin_counts.tolist(),
            strict=True,
        )
    )
    executemany(connection, "rollup_bins", bins)


def _stored_hour_sketches(
    connection: Connection, batch: _SortedBatch, hours: NDArray[np.int64]
) -> dict[tuple[int, int], bytes]:
    """The sketches of the hour rows the batch falls in, read ``FOR UPDATE`` (a no-op on
    SQLite, whose writers are serialized), so a concurrent writer to the same hour waits and
    then merges into the sketch this one wrote instead of overwriting it."""
    h = metric_hour_rollups.c
    low, high = int(hours.min()), int(hours.max())
    existing: dict[tuple[int, int], bytes] = {}
    for chunk in chunks(np.unique(batch.series_ids).tolist()):
        rows = connection.execute(
            sa.select(h.series_id, h.hour, h.sketch)
            .where(h.series_id.in_(chunk), h.hour.between(low, high))
            .order_by(h.series_id, h.hour)
            .with_for_update()
        )
        existing.update(((int(sid), int(hour)), bytes(sketch)) for sid, hour, sketch in rows)
    return existing


def _update_hour_rollups(connection: Connection, batch: _SortedBatch) -> None:
    """Merge the batch into its hour rows: new rows are inserted, stored ones merged."""
    h = metric_hour_rollups.c
    hours = batch.minutes // PER_HOUR  # still sorted: the minutes are, within a series
    existing = _stored_hour_sketches(connection, batch, hours)
    inserts, updates = _hour_rows(batch, hours, existing)
    if updates:
        connection.execute(
            metric_hour_rollups.update()
            .where(h.series_id == sa.bindparam("b_sid"), h.hour == sa.bindparam("b_hour"))
            .values(**merged_stats(h), sketch=sa.bindparam("b_sketch", type_=sa.LargeBinary)),
            updates,
        )
    if inserts:
        connection.execute(metric_hour_rollups.insert(), inserts)


def _hour_rows(
    batch: _SortedBatch, hours: NDArray[np.int64], existing: dict[tuple[int, int], bytes]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The batch's hour rows: to insert (hours not stored yet) and to merge into the stored
    ones (bound as ``b_*``, their sketches already merged)."""
    groups = _runs(batch.series_ids, hours)
    count, total, lowest, highest = _aggregate(groups, batch.values)
    stops = [*groups[1:].tolist(), len(hours)]
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for sid, hour, n, s, lo, hi, start, stop in zip(
        batch.series_ids[groups].tolist(),
        hours[groups].tolist(),
        count.tolist(),
        total.tolist(),
        lowest.tolist(),
        highest.tolist(),
        groups.tolist(),
        stops,
        strict=True,
    ):
        new_bins = batch.bins[start:stop]
        new_counts = np.ones(len(new_bins), dtype=np.int64)
        stored = existing.get((sid, hour))
        if stored is None:
            inserts.append(
                {
                    "series_id": sid,
                    "hour": hour,
                    "count": n,
                    "sum": s,
                    "min": lo,
                    "max": hi,
                    "sketch": pack_sketch(new_bins, new_counts),
                }
            )
            continue
        old_bins, old_counts = unpack_sketch(stored)
        sketch = pack_sketch(
            np.concatenate((old_bins, new_bins)), np.concatenate((old_counts, new_counts))
        )
        updates.append(
            {
                "b_sid": sid,
                "b_hour": hour,
                "b_count": n,
                "b_sum": s,
                "b_min": lo,
                "b_max": hi,
                "b_sketch": sketch,
            }
        )
    return inserts, updates


# ---------------------------------------------------------------------- the hour backfill


def backfill_hours(database: Database) -> None:
    """Build the hour rollups from the minute rollups once, for a database written before
    hour rollups existed (or a new, empty one); later writes keep both in step.

    Runs with writers and other builders locked out (SQLite ``BEGIN IMMEDIATE``, a
    PostgreSQL ``SHARE ROW EXCLUSIVE`` lock on the minute rollups), rebuilds the hour table
    from scratch and records that in ``metric_store_state``, so concurrent stores build it
    once and lose nothing. Every process writing to the store must run a driftloop with hour
    rollups once it is built (an older writer would leave them behind)."""
    state = metric_store_state.c
    marker = sa.select(state.value).where(state.key == HOUR_ROLLUPS)
    engine = database.engine
    with backend_errors(database):
        with engine.connect() as connection:
            if connection.execute(marker).first() is not None:
                return
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with engine.begin() as connection:
                    if database.dialect == "sqlite":
                        connection.exec_driver_sql("BEGIN IMMEDIATE")
                    elif database.dialect == "postgresql":
                        connection.execute(
                            sa.text(
                                "LOCK TABLE metric_rollups, metric_rollup_bins "
                                "IN SHARE ROW EXCLUSIVE MODE"
                            )
                        )
                    if connection.execute(marker).first() is None:
                        _build_hour_rollups(connection)
                break
            except SqlIntegrityError as exc:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise ConflictError(
                        f"building the hour rollups kept colliding with another store: {exc.orig}"
                    ) from exc


def _hour_of(minute: sa.ColumnElement[int]) -> sa.ColumnElement[int]:
    """Floor division by 60 that truncating SQL integer division gets right for any sign."""
    return (minute - (minute % PER_HOUR + PER_HOUR) % PER_HOUR) // PER_HOUR


def _build_hour_rollups(connection: Connection) -> None:
    """Every series' hour rollups from its minute rollups: count/sum/min/max with one
    ``INSERT ... SELECT``, then the sketches series by series (bounded memory)."""
    r, b, h = metric_rollups.c, metric_rollup_bins.c, metric_hour_rollups.c
    connection.execute(metric_hour_rollups.delete())
    rollup_hour = _hour_of(r.minute).label("hour")
    connection.execute(
        metric_hour_rollups.insert().from_select(
            ["series_id", "hour", "count", "sum", "min", "max", "sketch"],
            sa.select(
                r.series_id,
                rollup_hour,
                sa.func.sum(r.count),
                sa.func.sum(r.sum),
                sa.func.min(r.min),
                sa.func.max(r.max),
                sa.literal(b"", type_=sa.LargeBinary),
            ).group_by(r.series_id, rollup_hour),
        )
    )
    bin_hour = _hour_of(b.minute).label("hour")
    series_ids = connection.execute(sa.select(metric_series.c.series_id)).scalars().all()
    for series_id in sorted(int(s) for s in series_ids):
        rows = connection.execute(
            sa.select(bin_hour, b.bin, sa.func.sum(b.count))
            .where(b.series_id == series_id)
            .group_by(bin_hour, b.bin)
            .order_by(bin_hour)
        ).all()
        if not rows:
            continue
        data = matrix(rows, 3, np.int64)
        starts = np.flatnonzero(np.r_[True, data[1:, 0] != data[:-1, 0]]).tolist()
        stops = [*starts[1:], len(data)]
        connection.execute(
            metric_hour_rollups.update()
            .where(h.series_id == series_id, h.hour == sa.bindparam("b_hour"))
            .values(sketch=sa.bindparam("b_sketch", type_=sa.LargeBinary)),
            [
                {
                    "b_hour": int(data[start, 0]),
                    "b_sketch": pack_sketch(data[start:stop, 1], data[start:stop, 2]),
                }
                for start, stop in zip(starts, stops, strict=True)
            ],
        )
    connection.execute(metric_store_state.insert().values(key=HOUR_ROLLUPS, value=1.0))
