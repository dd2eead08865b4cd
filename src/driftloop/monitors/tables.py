"""Tables of driftloop.monitors: the state of every (monitor, group), the events (transitions and
renotifications) and the incidents with their timelines."""

from __future__ import annotations

import sqlalchemy as sa

from driftloop.database import METADATA

monitor_states = sa.Table(
    "monitor_states",
    METADATA,
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
    sa.Column("drifted_features", sa.Text, nullable=True),
)

monitor_events = sa.Table(
    "monitor_events",
    METADATA,
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

incidents = sa.Table(
    "incidents",
    METADATA,
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

incident_timeline = sa.Table(
    "incident_timeline",
    METADATA,
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

__all__ = ["METADATA", "incident_timeline", "incidents", "monitor_events", "monitor_states"]
