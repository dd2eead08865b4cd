"""Tables of driftloop.metrics: series (a metric name with one tag set), raw points, 1-minute
rollups with their log-bin sketch (one row per bin), 1-hour rollups with their sketch packed in
one column, and the store's own bookkeeping.

Tags live as canonical JSON on the series row and are filtered and grouped in Python after one
indexed lookup by metric name, so the same SQL runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa

from driftloop.database import METADATA

metric_series = sa.Table(
    "metric_series",
    METADATA,
    sa.Column("series_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, index=True),
    sa.Column("tags", sa.Text, nullable=False),
    sa.Column("key_hash", sa.String(40), nullable=False, unique=True),
)

metric_points = sa.Table(
    "metric_points",
    METADATA,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("series_id", sa.Integer, nullable=False),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("point_id", sa.String(200), nullable=True, unique=True),
    sa.Index("ix_metric_points_series_ts", "series_id", "timestamp"),
)

metric_rollups = sa.Table(
    "metric_rollups",
    METADATA,
    sa.Column("series_id", sa.Integer, primary_key=True),
    sa.Column("minute", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("sum", sa.Float, nullable=False),
    sa.Column("min", sa.Float, nullable=False),
    sa.Column("max", sa.Float, nullable=False),
    sa.Index("ix_metric_rollups_minute", "minute"),
)

metric_rollup_bins = sa.Table(
    "metric_rollup_bins",
    METADATA,
    sa.Column("series_id", sa.Integer, primary_key=True),
    sa.Column("minute", sa.BigInteger, primary_key=True),
    sa.Column("bin", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Index("ix_metric_rollup_bins_minute", "minute"),
)

metric_hour_rollups = sa.Table(
    "metric_hour_rollups",
    METADATA,
    sa.Column("series_id", sa.Integer, primary_key=True),
    sa.Column("hour", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("sum", sa.Float, nullable=False),
    sa.Column("min", sa.Float, nullable=False),
    sa.Column("max", sa.Float, nullable=False),
    # the hour's log-bin sketch packed in one value (see driftloop.metrics.sketch.pack_sketch):
    # a week is 168 rows per series however many distinct bins each hour holds
    sa.Column("sketch", sa.LargeBinary, nullable=False),
    sa.Index("ix_metric_hour_rollups_hour", "hour"),
)

metric_store_state = sa.Table(
    "metric_store_state",
    METADATA,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
)

__all__ = [
    "METADATA",
    "metric_hour_rollups",
    "metric_points",
    "metric_rollup_bins",
    "metric_rollups",
    "metric_series",
    "metric_store_state",
]
