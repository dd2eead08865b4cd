"""Release 1: every table as driftloop made it with ``METADATA.create_all`` before it had
migrations, and the ``driftloop_schema`` row (version 1).

Revision ID: 0001
Revises: (none)

:data:`metadata` is a frozen copy of the tables of release 1 (``*/tables.py`` at that release):
never edit it, later changes are later revisions. Its constraints are unnamed, as release 1 made
them, so a database made by this revision and one made by release 1 are the same: PostgreSQL
names them ``<table>_pkey``, ``<table>_<column>_key`` and ``<table>_<column>_fkey``; SQLite keeps
them unnamed (a batch operation names them through a naming convention to drop one).

An existing release-1 database (a ``driftloop_schema`` row, no revision) is not run through
this revision: :meth:`driftloop.database.core.Database.upgrade` stamps it 0001, after creating
the tables that release added while the database was in use (``create_all`` used to).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

metadata = sa.MetaData()

# ------------------------------------------------------------------------- driftloop.database
driftloop_schema = sa.Table(
    "driftloop_schema",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

# ------------------------------------------------------------------------- driftloop.registry
sa.Table(
    "registry_model_versions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("artifact_uri", sa.Text, nullable=False),
    sa.Column("files", sa.JSON, nullable=False),
    sa.Column("trainer", sa.String(64), nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column("snapshot_id", sa.String(128), nullable=True),
    sa.Column("snapshot_hash", sa.String(64), nullable=True),
    sa.Column("evaluation", sa.JSON, nullable=True),
    sa.Column("reference", sa.JSON, nullable=True),
    sa.Column("parent_version", sa.Integer, nullable=True),
    sa.Column("trigger", sa.String(255), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("deployed_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("name", "version", name="uq_registry_model_version"),
)

sa.Table(
    "registry_model_aliases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("alias", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
)

sa.Table(
    "registry_alias_history",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, index=True),
    sa.Column("alias", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("previous_version", sa.Integer, nullable=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
)

# ------------------------------------------------------------------------- driftloop.metrics
sa.Table(
    "metric_series",
    metadata,
    sa.Column("series_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, index=True),
    sa.Column("tags", sa.Text, nullable=False),
    sa.Column("key_hash", sa.String(40), nullable=False, unique=True),
)

sa.Table(
    "metric_points",
    metadata,
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

sa.Table(
    "metric_rollups",
    metadata,
    sa.Column("series_id", sa.Integer, primary_key=True),
    sa.Column("minute", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("sum", sa.Float, nullable=False),
    sa.Column("min", sa.Float, nullable=False),
    sa.Column("max", sa.Float, nullable=False),
    sa.Index("ix_metric_rollups_minute", "minute"),
)

sa.Table(
    "metric_rollup_bins",
    metadata,
    sa.Column("series_id", sa.Integer, primary_key=True),
    sa.Column("minute", sa.BigInteger, primary_key=True),
    sa.Column("bin", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Index("ix_metric_rollup_bins_minute", "minute"),
)

sa.Table(
    "metric_hour_rollups",
    metadata,
    sa.Column("series_id", sa.Integer, primary_key=True),
    sa.Column("hour", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("sum", sa.Float, nullable=False),
    sa.Column("min", sa.Float, nullable=False),
    sa.Column("max", sa.Float, nullable=False),
    sa.Column("sketch", sa.LargeBinary, nullable=False),
    sa.Index("ix_metric_hour_rollups_hour", "hour"),
)

sa.Table(
    "metric_store_state",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Float, nullable=False),
)

# ------------------------------------------------------------------------- driftloop.monitors
sa.Table(
    "monitor_states",
    metadata,
    sa.Column("monitor", sa.String(200), primary_key=True),
    sa.Column("group_key", sa.String(1000), primary_key=True),
    sa.Column("group_tags", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("since", sa.Float, nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("threshold", sa.Float, nullable=True),
    sa.Column("last_evaluated", sa.Float, nullable=True),
    sa.Column("last_data_at", sa.Float, nullable=True),
    sa.Column("last_notified", sa.Float, nullable=True),
    sa.Column("first_seen", sa.Float, nullable=True),
    sa.Column("incident_id", sa.String(64), nullable=True),
    sa.Column("reference_key", sa.String(64), nullable=True),
    sa.Column("cursor", sa.Float, nullable=True),
)

sa.Table(
    "monitor_events",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("monitor", sa.String(200), nullable=False),
    sa.Column("group_key", sa.String(1000), nullable=False),
    sa.Column("group_tags", sa.Text, nullable=False),
    sa.Column("model", sa.String(200), nullable=True, index=True),
    sa.Column("previous", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("threshold", sa.Float, nullable=True),
    sa.Column("timestamp", sa.Float, nullable=False, index=True),
    sa.Column("incident_id", sa.String(64), nullable=True, index=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("handles", sa.Text, nullable=False),
    sa.Column("renotification", sa.Boolean, nullable=False),
    sa.Column("details", sa.Text, nullable=False),
    sa.Index("ix_monitor_events_monitor_ts", "monitor", "timestamp"),
)

sa.Table(
    "incidents",
    metadata,
    sa.Column("incident_id", sa.String(64), primary_key=True),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("monitor", sa.String(200), nullable=True),
    sa.Column("group_key", sa.String(1000), nullable=True),
    sa.Column("group_tags", sa.Text, nullable=False),
    sa.Column("model", sa.String(200), nullable=True, index=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("opened_at", sa.Float, nullable=False, index=True),
    sa.Column("resolved_at", sa.Float, nullable=True),
    sa.Column("details", sa.Text, nullable=False),
)

sa.Table(
    "incident_timeline",
    metadata,
    sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "incident_id",
        sa.String(64),
        sa.ForeignKey("incidents.incident_id"),
        nullable=False,
        index=True,
    ),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)

# ------------------------------------------------------------------------- driftloop.notify
sa.Table(
    "notify_events",
    metadata,
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("incident_id", sa.String(128), nullable=True, index=True),
    sa.Column("monitor", sa.String(256), nullable=False),
    sa.Column("group_json", sa.Text, nullable=False),
    sa.Column("previous", sa.String(16), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("threshold", sa.Float, nullable=True),
    sa.Column("timestamp", sa.Float, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("handles_json", sa.Text, nullable=False),
    sa.Column("renotification", sa.Boolean, nullable=False),
    sa.Column("details_json", sa.Text, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("routed_at", sa.Float, nullable=True, index=True),
)

sa.Table(
    "notify_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(128), nullable=False),
    sa.Column("notifier", sa.String(128), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("http_status", sa.Integer, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Column("retry_after", sa.Float, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_notify_deliveries_event", "event_id", "notifier"),
)

sa.Table(
    "notify_sent",
    metadata,
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("notifier", sa.String(128), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("claimed_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
)

sa.Table(
    "notify_jira_issues",
    metadata,
    sa.Column("notifier", sa.String(128), primary_key=True),
    sa.Column("incident_key", sa.String(128), primary_key=True),
    sa.Column("issue_id", sa.String(64), nullable=False),
    sa.Column("issue_key", sa.String(64), nullable=False),
    sa.Column("issue_url", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("resolved_at", sa.Float, nullable=True),
)

sa.Table(
    "notify_graphs",
    metadata,
    sa.Column("graph_id", sa.String(64), primary_key=True),
    sa.Column("monitor", sa.String(256), nullable=False),
    sa.Column("png", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
)

# ------------------------------------------------------------------------- driftloop.pipeline
sa.Table(
    "retrain_jobs",
    metadata,
    sa.Column("job_id", sa.String(32), primary_key=True),
    sa.Column("model", sa.String(64), nullable=False, index=True),
    sa.Column("incident_id", sa.String(64), nullable=True, unique=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("active_model", sa.String(64), nullable=True, unique=True),
    sa.Column("trigger", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("attached_alerts", sa.Integer, nullable=False, default=0),
    sa.Column("snapshot_id", sa.String(64), nullable=True),
    sa.Column("previous_version", sa.Integer, nullable=True),
    sa.Column("candidate_version", sa.Integer, nullable=True),
    sa.Column("result", sa.JSON, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("worker", sa.String(128), nullable=True),
    sa.Column("heartbeat_at", sa.Float, nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("deployed_at", sa.Float, nullable=True),
)

sa.Table(
    "retrain_job_steps",
    metadata,
    sa.Column("step_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(32), sa.ForeignKey("retrain_jobs.job_id"), index=True),
    sa.Column("step", sa.String(16), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=True),
    sa.Column("log", sa.Text, nullable=False, default=""),
)

# ------------------------------------------------------------------------- driftloop.serving
sa.Table(
    "serving_api_keys",
    metadata,
    sa.Column("key_id", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
)

sa.Table(
    "serving_feedback",
    metadata,
    sa.Column("feedback_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prediction_id", sa.String(64), nullable=False, index=True),
    sa.Column("model", sa.String(64), nullable=False, index=True),
    sa.Column("label", sa.String(256), nullable=False),
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("predicted_class", sa.String(256), nullable=True),
    sa.Column("correct", sa.Boolean, nullable=True),
    sa.Column("key_id", sa.String(16), nullable=True),
    sa.Column("received_at", sa.Float, nullable=False, index=True),
)

sa.Table(
    "serving_feedback_texts",
    metadata,
    sa.Column("sample_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prediction_id", sa.String(64), nullable=False),
    sa.Column("model", sa.String(64), nullable=False, index=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("label", sa.String(256), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=True),
    sa.Column("received_at", sa.Float, nullable=False),
)


def upgrade() -> None:
    bind = op.get_bind()
    metadata.create_all(bind, checkfirst=False)
    bind.execute(driftloop_schema.insert().values(version=1, applied_at=datetime.now(UTC)))


def downgrade() -> None:
    metadata.drop_all(op.get_bind(), checkfirst=False)
