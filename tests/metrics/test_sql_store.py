"""SqlMetricStore against numpy: every aggregation, window edges, filters, group by, the rollup
path against the raw path, idempotent writes and retention."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from driftloop.config import MetricsConfig
from driftloop.database import Database
from driftloop.errors import InvalidInputError
from driftloop.metrics.points import Aggregation, MetricPoint, PointBatch
from driftloop.metrics.sketch import RELATIVE_ACCURACY
from driftloop.metrics.sql import SqlMetricStore

T0 = 1_699_999_980.0  # a minute boundary
AGGREGATIONS: list[Aggregation] = ["avg", "min", "max", "sum", "count", "p50", "p90", "p99"]
MODELS = ("alpha", "beta", "gamma")


def numpy_aggregate(values: np.ndarray, aggregation: str) -> float:
    functions: dict[str, Callable[[np.ndarray], Any]] = {
        "avg": np.mean,
        "min": np.min,
        "max": np.max,
        "sum": np.sum,
        "count": lambda v: float(len(v)),
        "p50": lambda v: np.percentile(v, 50),
        "p90": lambda v: np.percentile(v, 90),
        "p99": lambda v: np.percentile(v, 99),
    }
    return float(functions[aggregation](values))


def make_store(database: Database, **kwargs: float) -> SqlMetricStore:
    return SqlMetricStore(
        database,
        raw_retention=kwargs.pop("raw_retention", 86400.0),
        rollup_retention=kwargs.pop("rollup_retention", 30 * 86400.0),
        **kwargs,
    )


@pytest.fixture
def dataset() -> dict[str, np.ndarray]:
    """Three models and two regions over 30 minutes, irregular timestamps."""
    rng = np.random.default_rng(7)
    n = 6000
    return {
        "ts": np.sort(T0 + rng.uniform(0, 1800, n)),
        "value": rng.beta(8, 2, n),
        "model": rng.choice(MODELS, n),
        "region": rng.choice(["eu", "us"], n),
    }


def write_dataset(store: SqlMetricStore, data: dict[str, np.ndarray]) -> None:
    points = [
        MetricPoint("model_confidence", float(v), float(t), {"model": str(m), "region": str(r)})
        for t, v, m, r in zip(data["ts"], data["value"], data["model"], data["region"], strict=True)
    ]
    assert store.write(points) == len(points)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_each_aggregation_grouped_and_filtered_matches_numpy(
    database: Database, dataset: dict[str, np.ndarray], aggregation: Aggregation
) -> None:
    store = make_store(database)
    write_dataset(store, dataset)
    start, end = T0 + 123.4, T0 + 1500.7
    in_window = (dataset["ts"] >= start) & (dataset["ts"] < end)

    grouped = store.query(
        "model_confidence", aggregation, start, end, group_by=["model"], resolution="raw"
    )
    assert [r.group for r in grouped] == [{"model": m} for m in MODELS]
    for result in grouped:
        mask = in_window & (dataset["model"] == result.group["model"])
        assert result.count == int(mask.sum())
        assert result.value == pytest.approx(
            numpy_aggregate(dataset["value"][mask], aggregation), rel=1e-9
        )

    filtered = store.query(
        "model_confidence",
        aggregation,
        start,
        end,
        filter={"region": "eu", "model": "beta"},
        resolution="raw",
    )
    mask = in_window & (dataset["region"] == "eu") & (dataset["model"] == "beta")
    assert len(filtered) == 1
    assert filtered[0].group == {}
    assert filtered[0].count == int(mask.sum())
    assert filtered[0].value == pytest.approx(
        numpy_aggregate(dataset["value"][mask], aggregation), rel=1e-9
    )


def test_group_by_two_tags_and_series_without_the_tag(database: Database) -> None:
    store = make_store(database)
    store.write(
        [
            MetricPoint("latency", 1.0, T0, {"model": "a", "region": "eu"}),
            MetricPoint("latency", 3.0, T0 + 1, {"model": "a", "region": "eu"}),
            MetricPoint("latency", 5.0, T0 + 2, {"model": "a", "region": "us"}),
            MetricPoint("latency", 7.0, T0 + 3, {"model": "b", "region": "us"}),
            MetricPoint("latency", 100.0, T0 + 4, {"model": "b"}),  # no region: in no region group
            MetricPoint("other_metric", 1000.0, T0 + 5, {"model": "a", "region": "eu"}),
        ]
    )
    results = store.query("latency", "avg", T0, T0 + 60, group_by=["model", "region"])
    assert [(r.group, r.value, r.count) for r in results] == [
        ({"model": "a", "region": "eu"}, 2.0, 2),
        ({"model": "a", "region": "us"}, 5.0, 1),
        ({"model": "b", "region": "us"}, 7.0, 1),
    ]
    by_model = store.query("latency", "max", T0, T0 + 60, group_by=["model"])
    assert [(r.group["model"], r.value) for r in by_model] == [("a", 5.0), ("b", 100.0)]


def test_window_start_is_inclusive_and_end_exclusive(database: Database) -> None:
    store = make_store(database)
    store.write(
        [
            MetricPoint("m", 1.0, T0 - 0.001),
            MetricPoint("m", 2.0, T0),
            MetricPoint("m", 4.0, T0 + 59.999),
            MetricPoint("m", 8.0, T0 + 60.0),
        ]
    )
    for resolution in ("raw", "rollup"):
        [result] = store.query("m", "sum", T0, T0 + 60, resolution=resolution)
        assert (result.value, result.count) == (6.0, 2), resolution
    [empty] = store.query("m", "avg", T0 + 100, T0 + 200)
    assert (empty.value, empty.count) == (None, 0)
    [zero] = store.query("m", "count", T0 + 100, T0 + 200)
    assert (zero.value, zero.count) == (0.0, 0)
    assert store.query("m", "avg", T0 + 100, T0 + 200, group_by=["model"]) == []


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_rollup_path_agrees_with_raw_path(
    database: Database, dataset: dict[str, np.ndarray], aggregation: Aggregation
) -> None:
    store = make_store(database)
    write_dataset(store, dataset)
    start, end = T0 + 95.5, T0 + 1712.25  # ragged edges: whole minutes from rollups, edges raw
    raw = store.query(
        "model_confidence", aggregation, start, end, group_by=["model"], resolution="raw"
    )
    rolled = store.query(
        "model_confidence", aggregation, start, end, group_by=["model"], resolution="rollup"
    )
    assert [r.group for r in raw] == [r.group for r in rolled]
    in_window = (dataset["ts"] >= start) & (dataset["ts"] < end)
    for exact, approx in zip(raw, rolled, strict=True):
        assert exact.count == approx.count
        assert exact.value is not None
        assert approx.value is not None
        if aggregation.startswith("p"):
            of_model = dataset["model"] == exact.group["model"]
            values = np.sort(dataset["value"][in_window & of_model])
            rank = float(aggregation[1:]) / 100 * (len(values) - 1)
            low, high = values[math.floor(rank)], values[math.ceil(rank)]
            assert low * (1 - RELATIVE_ACCURACY) <= approx.value <= high * (1 + RELATIVE_ACCURACY)
            assert approx.value == pytest.approx(exact.value, rel=RELATIVE_ACCURACY)
        else:
            assert approx.value == pytest.approx(exact.value, rel=1e-9)


def test_long_windows_use_rollups_automatically(database: Database) -> None:
    """After raw points are purged, a long window is still answered from the rollups."""
    store = make_store(database, raw_retention=3600.0, raw_query_limit=600.0)
    values = np.linspace(0.5, 1.0, 240)
    store.write(
        [MetricPoint("m", float(v), T0 + 30 * i, {"model": "a"}) for i, v in enumerate(values)]
    )  # two hours, one point every 30 s
    result = store.purge(now=T0 + 7200.0)
    assert result.raw_points == 120
    assert result.rollups == 0
    assert result.raw_horizon == T0 + 3600.0
    assert len(store.points("m", T0, T0 + 7200)) == 120
    [auto] = store.query("m", "avg", T0, T0 + 7200)
    assert auto.count == 240
    assert auto.value == pytest.approx(float(values.mean()))
    [p50] = store.query("m", "p50", T0, T0 + 7200)
    assert p50.value == pytest.approx(float(np.percentile(values, 50)), rel=RELATIVE_ACCURACY)
    # a short window in the purged past: whole minutes from the rollups
    [short] = store.query("m", "count", T0 + 60, T0 + 120)
    assert short.count == 2
    # ... and a ragged one there widens to its whole minutes (raw edges are gone)
    [widened] = store.query("m", "count", T0 + 90, T0 + 150)
    assert widened.count == 4


def test_rollup_retention_deletes_old_minutes(database: Database) -> None:
    store = make_store(database, raw_retention=60.0, rollup_retention=600.0)
    store.write([MetricPoint("m", 1.0, T0 + 60 * i) for i in range(20)])
    result = store.purge(now=T0 + 20 * 60)
    assert result.rollups == 10  # minutes 0..9 ended before now - 600 s
    [left] = store.query("m", "count", T0, T0 + 1200, resolution="rollup")
    assert left.count == 10


def test_duplicate_point_ids_are_stored_once(database: Database) -> None:
    store = make_store(database)
    batch = [
        MetricPoint("m", float(i), T0 + i, {"model": "a"}, point_id=f"p{i}") for i in range(10)
    ]
    assert store.write(batch) == 10
    again = [
        *batch[5:],
        MetricPoint("m", 99.0, T0 + 20, {"model": "a"}, "p99"),
        MetricPoint("m", 98.0, T0 + 21, {"model": "a"}, "p99"),
    ]
    assert store.write(again) == 1
    for resolution in ("raw", "rollup"):
        [total] = store.query("m", "sum", T0, T0 + 60, resolution=resolution)
        assert (total.value, total.count) == (45.0 + 99.0, 11), resolution
    assert store.write([]) == 0


def test_a_redelivered_batch_of_distinct_ids_stores_only_the_new_points(database: Database) -> None:
    store = make_store(database)
    batch = [
        MetricPoint("m", float(i), T0 + i, {"model": "a"}, point_id=f"p{i}") for i in range(10)
    ]
    assert store.write(batch[:6]) == 6
    assert store.write(batch) == 4  # ids distinct within the batch, 6 of them stored before
    assert store.write(batch) == 0
    for resolution in ("raw", "rollup"):
        [total] = store.query("m", "sum", T0, T0 + 60, resolution=resolution)
        assert (total.value, total.count) == (45.0, 10), resolution
    [p50] = store.query("m", "p50", T0, T0 + 60, resolution="rollup")
    assert p50.count == 10


@pytest.mark.parametrize("size", [1, 3, 511, 512, 513, 1500])
def test_batches_of_any_size_are_stored_whole_and_once(database: Database, size: int) -> None:
    # SQLite takes rows in multi-row statements of power-of-two sizes: every size must land
    # whole, and a redelivery (the lookup path) must count nothing new.
    store = make_store(database)
    values = np.random.default_rng(size).uniform(0, 1, size)
    batch = [
        MetricPoint("m", float(v), T0 + i % 120, {"model": "ab"[i % 2]}, f"p{i}")
        for i, v in enumerate(values)
    ]
    assert store.write(batch) == size
    assert store.write(batch) == 0
    for resolution in ("raw", "rollup"):
        [total] = store.query("m", "sum", T0, T0 + 120, resolution=resolution)
        assert total.count == size, resolution
        assert total.value == pytest.approx(values.sum()), resolution
        groups = store.query("m", "count", T0, T0 + 120, group_by=["model"], resolution=resolution)
        assert (
            sorted((g.group["model"], g.count) for g in groups)
            == [("a", (size + 1) // 2), ("b", size // 2)][: min(size, 2)]
        )


def test_a_batch_goes_in_a_few_statements(database: Database) -> None:
    # SQLite: one statement per row would hand Python's lock back and forth per row, stalling
    # the writer behind the threads that report (see benchmarks/insights_throughput.py);
    # PostgreSQL: one row per round trip held ingestion at ~34,000 points/s
    calls: list[tuple[str, Any, bool]] = []

    def record(
        _conn: object,
        _cursor: object,
        statement: str,
        parameters: Any,
        _context: object,
        executemany: bool,
    ) -> None:
        calls.append((statement, parameters, executemany))

    store = make_store(database)
    sa.event.listen(database.engine, "before_cursor_execute", record)
    try:
        batch = [
            MetricPoint("m", i / 1500, T0 + i % 60, {"model": "a"}, f"p{i}") for i in range(1500)
        ]
        assert store.write(batch) == 1500
    finally:
        sa.event.remove(database.engine, "before_cursor_execute", record)
    inserts = [call for call in calls if call[0].startswith("INSERT INTO metric_points")]
    assert not any(many for _, _, many in inserts)
    assert not any("RETURNING" in sql for sql, _, _ in inserts)  # nothing reads the new ids
    if database.engine.dialect.name == "sqlite":  # multi-row VALUES of power-of-two sizes
        assert [sql.count("(?, ?, ?, ?)") for sql, _, _ in inserts] == [
            512,
            512,
            256,
            128,
            64,
            16,
            8,
            4,
        ]
    else:  # one array per column
        [(sql, arrays, _)] = inserts
        assert "unnest(" in sql
        assert [len(array) for array in arrays] == [1500] * 4
        assert set(arrays[3]) == {p.point_id for p in batch}
    [points] = store.query("m", "count", T0, T0 + 60, resolution="raw")
    assert points.count == 1500


def test_a_point_batch_is_stored_like_its_points(database: Database) -> None:
    store = make_store(database)
    shared = {"model": "a", "version": "1"}
    columns = PointBatch(
        ["m", "m", "n", "m"],
        [1, 2.5, 3.0, np.float64(4.0)],
        [T0, T0 + 1, T0 + 2, T0 + 3],
        [shared, shared, shared, {"version": "1", "model": "a"}],
        ["c1", "c2", "c3", "c4"],
    )
    assert store.write(columns) == 4
    assert store.write(list(columns)) == 0  # the same points, as objects: already stored
    [m] = store.query("m", "sum", T0, T0 + 60, filter={"model": "a", "version": "1"})
    assert (m.value, m.count) == (7.5, 3)
    [n] = store.points("n", T0, T0 + 60)
    assert (n.value, n.tags, n.point_id) == (3.0, shared, "c3")
    with pytest.raises(InvalidInputError, match="tags must be a mapping"):
        store.write(PointBatch(["m"], [1.0], [T0], ["model=a"], [None]))  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="names must be strings"):
        store.write(PointBatch([["m"]], [1.0], [T0], [{}], [None]))  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="numbers"):
        store.write(PointBatch(["m"], [[1.0, 2.0]], [T0], [{}], [None]))  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="point_id"):
        store.write(PointBatch(["m"], [1.0], [T0], [{}], [""]))
    [m] = store.query("m", "count", T0, T0 + 60)
    assert m.count == 3


def test_same_tags_in_any_order_are_one_series(database: Database) -> None:
    store = make_store(database)
    store.write(
        [
            MetricPoint("m", 1.0, T0, {"a": "1", "b": "2"}),
            MetricPoint("m", 3.0, T0 + 1, {"b": "2", "a": "1"}),
        ]
    )
    other = make_store(database)  # a second process sees the same series
    other.write([MetricPoint("m", 5.0, T0 + 2, {"b": "2", "a": "1"})])
    [result] = store.query("m", "avg", T0, T0 + 60, group_by=["a", "b"])
    assert (result.group, result.value, result.count) == ({"a": "1", "b": "2"}, 3.0, 3)


def test_bad_points_are_rejected_and_nothing_is_stored(database: Database) -> None:
    store = make_store(database)
    good = MetricPoint("m", 1.0, T0)
    with pytest.raises(InvalidInputError, match="non-finite"):
        store.write([good, MetricPoint("m", math.nan, T0)])
    with pytest.raises(InvalidInputError, match="numbers"):
        store.write([good, MetricPoint("m", "high", T0)])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="tags"):
        store.write([good, MetricPoint("m", 1.0, T0, {"model": 3})])  # type: ignore[dict-item]
    with pytest.raises(InvalidInputError, match="metric name"):
        store.write([MetricPoint("", 1.0, T0)])
    [result] = store.query("m", "count", T0 - 60, T0 + 60)
    assert result.count == 0
    with pytest.raises(InvalidInputError, match="aggregation"):
        store.query("m", "median", T0, T0 + 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="empty"):
        store.query("m", "avg", T0, T0)


def test_series_buckets_match_numpy(database: Database, dataset: dict[str, np.ndarray]) -> None:
    store = make_store(database, raw_query_limit=600.0)
    write_dataset(store, dataset)
    for start, step in ((T0 + 7.5, 100.0), (T0, 300.0)):  # raw path, then rollups + raw tail
        end = T0 + 1750.0
        buckets = store.series("model_confidence", start, end, step, filter={"model": "alpha"})
        mask = (dataset["model"] == "alpha") & (dataset["ts"] >= start) & (dataset["ts"] < end)
        index = ((dataset["ts"][mask] - start) // step).astype(int)
        values = dataset["value"][mask]
        assert [b.timestamp for b in buckets] == [start + i * step for i in np.unique(index)]
        for bucket, i in zip(buckets, np.unique(index), strict=True):
            members = values[index == i]
            assert bucket.count == len(members)
            assert bucket.avg == pytest.approx(float(members.mean()))
            assert (bucket.min, bucket.max) == (float(members.min()), float(members.max()))


def test_points_and_earliest(database: Database) -> None:
    store = make_store(database)
    store.write(
        [
            MetricPoint("m", 3.0, T0 + 3, {"model": "a"}, "x3"),
            MetricPoint("m", 1.0, T0 + 1, {"model": "b"}),
            MetricPoint("m", 2.0, T0 + 2, {"model": "a"}),
        ]
    )
    points = store.points("m", T0, T0 + 3)
    assert [(p.value, dict(p.tags)) for p in points] == [
        (1.0, {"model": "b"}),
        (2.0, {"model": "a"}),
    ]
    [last] = store.points("m", T0 + 3, T0 + 4, filter={"model": "a"})
    assert (last.value, last.point_id) == (3.0, "x3")
    assert store.earliest("m", T0, T0 + 60, filter={"model": "a"}) == T0 + 2
    assert store.earliest("m", T0 + 10, T0 + 60) is None
    assert store.metric_names() == ["m"]


def test_from_config_and_bad_retention(database: Database) -> None:
    store = SqlMetricStore.from_config(
        database, MetricsConfig(raw_retention="2d", rollup_retention="30d")
    )
    assert (store.raw_retention, store.rollup_retention) == (172800.0, 2592000.0)
    with pytest.raises(InvalidInputError, match="retention"):
        SqlMetricStore(database, raw_retention=0, rollup_retention=10)
