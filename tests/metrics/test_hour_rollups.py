"""Hour rollups: multi-day windows read whole hours from them and stay exact (count, sum, min,
max, avg against numpy; percentiles equal to the minute-level sketch), late and concurrent
writes merge into existing hours, purge keeps them consistent with the minute rollups, and a
database written before hour rollups existed gets them built."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from driftloop.database import Database
from driftloop.metrics.points import Aggregation, MetricPoint
from driftloop.metrics.sketch import encode_bins, merge_bins, sketch_quantile, unpack_sketch
from driftloop.metrics.sql import SqlMetricStore
from driftloop.metrics.tables import (
    metric_hour_rollups,
    metric_points,
    metric_rollup_bins,
    metric_rollups,
    metric_series,
    metric_store_state,
)

H0 = 1_699_999_200.0  # an hour boundary
DAYS = 3
AGGREGATIONS: list[Aggregation] = ["avg", "min", "max", "sum", "count", "p50", "p90", "p99"]


def make_store(database: Database, **kwargs: float) -> SqlMetricStore:
    return SqlMetricStore(
        database,
        raw_retention=kwargs.pop("raw_retention", 365 * 86400.0),
        rollup_retention=kwargs.pop("rollup_retention", 365 * 86400.0),
        **kwargs,
    )


def dataset(seed: int = 3, n: int = 12_000) -> dict[str, np.ndarray]:
    """Two models over three days, irregular timestamps, positive and negative values."""
    rng = np.random.default_rng(seed)
    return {
        "ts": H0 + rng.uniform(0, DAYS * 86400, n),
        "value": np.where(rng.random(n) < 0.1, -rng.gamma(2.0, 3.0, n), rng.beta(8, 2, n)),
        "model": rng.choice(["a", "b"], n),
    }


def points_of(data: dict[str, np.ndarray], index: np.ndarray) -> list[MetricPoint]:
    return [
        MetricPoint(
            "m", float(data["value"][i]), float(data["ts"][i]), {"model": str(data["model"][i])}
        )
        for i in index.tolist()
    ]


def sketch_reference(values: np.ndarray, q: float) -> float | None:
    """What the minute-level sketch answers: every value's bin, clamped to the exact range."""
    bins, counts = merge_bins(encode_bins(values), np.ones(len(values), dtype=np.int64))
    return sketch_quantile(bins, counts, q, low=float(values.min()), high=float(values.max()))


def expected(values: np.ndarray, aggregation: str) -> float | None:
    if aggregation in ("p50", "p90", "p99"):
        return sketch_reference(values, float(aggregation[1:]) / 100)
    functions: dict[str, Callable[[np.ndarray], Any]] = {
        "avg": np.mean,
        "min": np.min,
        "max": np.max,
        "sum": np.sum,
        "count": lambda v: float(len(v)),
    }
    return float(functions[aggregation](values))


def check_hour_rows(database: Database, store: SqlMetricStore, data: dict[str, np.ndarray]) -> None:
    """Every stored hour row equals numpy over the raw values of its series and hour."""
    store.query("m", "count", H0, H0 + 60)  # the store builds hour rollups before its first use
    hours = np.floor(data["ts"] / 60).astype(np.int64) // 60
    h = metric_hour_rollups.c
    with database.engine.connect() as connection:
        tags = {
            int(sid): json.loads(text)["model"]
            for sid, text in connection.execute(
                sa.select(metric_series.c.series_id, metric_series.c.tags)
            )
        }
        rows = connection.execute(
            sa.select(h.series_id, h.hour, h.count, h.sum, h.min, h.max, h.sketch)
        ).all()
    seen = set()
    for sid, hour, count, total, low, high, sketch in rows:
        mask = (hours == hour) & (data["model"] == tags[sid])
        values = data["value"][mask]
        assert count == len(values) > 0
        assert total == pytest.approx(values.sum(), rel=1e-12, abs=1e-9)
        assert (low, high) == (values.min(), values.max())
        bins, counts = unpack_sketch(bytes(sketch))
        want_bins, want_counts = np.unique(encode_bins(values), return_counts=True)
        np.testing.assert_array_equal(bins, want_bins)
        np.testing.assert_array_equal(counts, want_counts)
        seen.add((tags[sid], hour))
    assert seen == set(zip(data["model"].tolist(), hours.tolist(), strict=True))


def test_multi_day_windows_match_numpy_and_the_minute_sketch(database: Database) -> None:
    data = dataset()
    store = make_store(database, raw_query_limit=3600.0)
    assert store.write(points_of(data, np.arange(len(data["ts"])))) == len(data["ts"])
    check_hour_rows(database, store, data)
    windows = [
        (H0 + 1234.5, H0 + 2 * 86400 + 3599.25),  # ragged seconds, minutes and hours
        (H0 + 3600.0, H0 + 86400.0),  # whole hours only
        (H0 + 59 * 60 + 30, H0 + 2 * 3600 + 30),  # one whole hour between two ragged ones
        (H0 - 86400.0, H0 + 5 * 86400.0),  # beyond the data on both sides
    ]
    for start, end in windows:
        in_window = (data["ts"] >= start) & (data["ts"] < end)
        for aggregation in AGGREGATIONS:
            results = store.query("m", aggregation, start, end, group_by=["model"])
            assert [r.group["model"] for r in results] == ["a", "b"]
            for result in results:
                values = data["value"][in_window & (data["model"] == result.group["model"])]
                assert result.count == len(values)
                want = expected(values, aggregation)
                assert want is not None
                assert result.value is not None
                if aggregation in ("avg", "sum"):
                    assert result.value == pytest.approx(want, rel=1e-12)
                else:
                    assert result.value == want, (aggregation, start, end)
            [filtered] = store.query("m", aggregation, start, end, filter={"model": "b"})
            [grouped_b] = [r for r in results if r.group == {"model": "b"}]
            assert (filtered.value, filtered.count) == (grouped_b.value, grouped_b.count)


def test_whole_hours_are_read_from_the_hour_rollups(database: Database) -> None:
    """With the raw points and minute rollups of the whole hours deleted behind the store's
    back, a multi-day window still counts them: they come from the hour rows."""
    data = dataset(n=3000)
    store = make_store(database)
    store.write(points_of(data, np.arange(len(data["ts"]))))
    start, end = H0 + 1800.5, H0 + 86400 + 1800.5
    [before] = store.query("m", "count", start, end)
    first, last = H0 + 3600.0, H0 + 86400.0  # the whole hours of the window
    with database.engine.begin() as connection:
        connection.execute(
            metric_points.delete().where(
                metric_points.c.timestamp >= first, metric_points.c.timestamp < last
            )
        )
        for table in (metric_rollups, metric_rollup_bins):
            connection.execute(
                table.delete().where(table.c.minute >= first // 60, table.c.minute < last // 60)
            )
    [after] = store.query("m", "count", start, end)
    assert after.count == before.count == int(((data["ts"] >= start) & (data["ts"] < end)).sum())


def test_late_out_of_order_writes_update_existing_hours(database: Database) -> None:
    data = dataset(seed=11, n=6000)
    order = np.random.default_rng(5).permutation(len(data["ts"]))
    store = make_store(database)
    for batch in np.array_split(order, 12):  # every batch touches hours written before
        store.write(points_of(data, batch))
    check_hour_rows(database, store, data)
    reader = make_store(database)
    start, end = H0 + 777.0, H0 + 2.5 * 86400
    mask = (data["ts"] >= start) & (data["ts"] < end)
    for aggregation in AGGREGATIONS:
        [result] = reader.query("m", aggregation, start, end)
        want = expected(data["value"][mask], aggregation)
        assert want is not None
        assert result.value is not None
        assert result.value == pytest.approx(want, rel=1e-12)


def test_concurrent_writers_to_the_same_hour_lose_nothing(database: Database) -> None:
    stores = [make_store(database) for _ in range(3)]
    stores[0].write([MetricPoint("m", 1.0, H0)])  # the series and the hour row exist
    errors: list[BaseException] = []

    def writer(store: SqlMetricStore, worker: int) -> None:
        try:
            for batch in range(8):
                store.write(
                    [
                        MetricPoint("m", float(worker * 100 + batch * 10 + i), H0 + 60 * i + worker)
                        for i in range(10)
                    ]
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s, w)) for w, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with database.engine.connect() as connection:
        [(count, sketch)] = connection.execute(
            sa.select(metric_hour_rollups.c.count, metric_hour_rollups.c.sketch)
        ).all()
    assert count == 1 + 3 * 8 * 10
    assert int(unpack_sketch(bytes(sketch))[1].sum()) == count
    [p50] = stores[0].query("m", "p50", H0 - 3600, H0 + 2 * 86400)
    values = np.array(
        [1.0] + [w * 100 + b * 10 + i for w in range(3) for b in range(8) for i in range(10)],
        dtype=np.float64,
    )
    assert p50.value == sketch_reference(values, 0.5)


def test_purge_keeps_hour_and_minute_rollups_consistent(database: Database) -> None:
    """The rollup horizon falls inside an hour: that hour's surviving minutes are read from the
    minute rollups (not from its hour row), older hours are deleted, later hours still used."""
    data = dataset(seed=2, n=4000)
    store = make_store(database, raw_retention=3600.0, rollup_retention=86400.0 + 1800.0)
    store.write(points_of(data, np.arange(len(data["ts"]))))
    now = H0 + 2 * 86400.0 + 3600.0
    result = store.purge(now)
    purge_line = math.floor((now - store.rollup_retention) / 60)  # minutes below are gone
    assert purge_line % 60 == 30
    assert result.rollup_horizon == now - store.rollup_retention
    hours = np.floor(data["ts"] / 60).astype(np.int64) // 60
    gone_hours = {
        (m, h)
        for m, h in zip(data["model"].tolist(), hours.tolist(), strict=True)
        if h * 60 < purge_line
    }
    assert result.hour_rollups == len(gone_hours) > 0
    with database.engine.connect() as connection:
        oldest = connection.execute(sa.select(sa.func.min(metric_hour_rollups.c.hour))).scalar()
    assert oldest is not None
    assert oldest * 60 >= purge_line
    minutes = np.floor(data["ts"] / 60).astype(np.int64)
    start, end = H0, now  # starts well before the purge line
    survives = (minutes >= purge_line) & (data["ts"] < end)
    for aggregation in ("count", "sum", "min", "max", "p90"):
        [got] = store.query("m", aggregation, start, end)
        want = expected(data["value"][survives], aggregation)
        assert want is not None
        assert got.value is not None
        assert got.count == int(survives.sum())
        assert got.value == pytest.approx(want, rel=1e-12)
    # a late point in the purged past lands in its minute, as before hour rollups existed
    late = float(H0 + 3600.0 + 5.0)
    store.write([MetricPoint("m", 1000.0, late, {"model": "a"})])
    [got] = store.query("m", "count", start, end)
    assert got.count == int(survives.sum()) + 1


def test_series_with_whole_hour_steps_uses_hour_rollups(database: Database) -> None:
    data = dataset(seed=4, n=5000)
    store = make_store(database, raw_query_limit=600.0)
    store.write(points_of(data, np.arange(len(data["ts"]))))
    for start, step in ((H0 + 3600.0, 7200.0), (H0 + 60.0, 3600.0), (H0 + 3600.0, 5400.0)):
        end = H0 + 2 * 86400.0 + 1234.5
        buckets = store.series("m", start, end, step, filter={"model": "a"})
        mask = (data["model"] == "a") & (data["ts"] >= start) & (data["ts"] < end)
        index = ((data["ts"][mask] - start) // step).astype(int)
        values = data["value"][mask]
        assert [b.timestamp for b in buckets] == [start + i * step for i in np.unique(index)]
        for bucket, i in zip(buckets, np.unique(index), strict=True):
            members = values[index == i]
            assert bucket.count == len(members)
            assert bucket.avg == pytest.approx(float(members.mean()), rel=1e-12)
            assert (bucket.min, bucket.max) == (float(members.min()), float(members.max()))


def test_hour_rollups_are_built_for_a_database_written_before_them(database: Database) -> None:
    data = dataset(seed=9, n=4000)
    store = make_store(database)
    store.write(points_of(data, np.arange(len(data["ts"]))))
    start, end = H0 + 999.0, H0 + 2 * 86400 + 99.0
    before = {a: store.query("m", a, start, end, group_by=["model"]) for a in AGGREGATIONS}
    with database.engine.begin() as connection:  # what an older driftloop left behind
        connection.execute(metric_hour_rollups.delete())
        connection.execute(
            metric_store_state.delete().where(metric_store_state.c.key == "hour_rollups")
        )
    upgraded = make_store(database)
    after = {a: upgraded.query("m", a, start, end, group_by=["model"]) for a in AGGREGATIONS}
    for aggregation in AGGREGATIONS:
        for old, new in zip(before[aggregation], after[aggregation], strict=True):
            assert new.count == old.count
            assert new.value == pytest.approx(old.value, rel=1e-12)
    check_hour_rows(database, upgraded, data)
    with database.engine.connect() as connection:
        marker = connection.execute(
            sa.select(metric_store_state.c.value).where(metric_store_state.c.key == "hour_rollups")
        ).scalar()
    assert marker == 1.0
