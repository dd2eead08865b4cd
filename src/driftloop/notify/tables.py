"""Tables of driftloop.notify: routed events, the per-attempt delivery log, the idempotency
claims, Jira incident → issue links, the stored graph images and the receipts of signed inbound
webhooks."""

from __future__ import annotations

import sqlalchemy as sa

from driftloop.database import METADATA

notify_events = sa.Table(
    "notify_events",
    METADATA,
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
"""Every event handed to the router; ``routed_at`` stays NULL until it was dispatched, so a
restarted background router replays what it had queued."""

notify_deliveries = sa.Table(
    "notify_deliveries",
    METADATA,
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
"""One row per delivery attempt."""

notify_sent = sa.Table(
    "notify_sent",
    METADATA,
    sa.Column("event_id", sa.String(128), primary_key=True),
    sa.Column("notifier", sa.String(128), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("claimed_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
)
"""The idempotency key (event, notifier): claimed before sending, so an event is delivered to a
notifier at most once, across restarts and across routers sharing the store."""

notify_jira_issues = sa.Table(
    "notify_jira_issues",
    METADATA,
    sa.Column("notifier", sa.String(128), primary_key=True),
    sa.Column("incident_key", sa.String(128), primary_key=True),
    sa.Column("issue_id", sa.String(64), nullable=False),
    sa.Column("issue_key", sa.String(64), nullable=False),
    sa.Column("issue_url", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("resolved_at", sa.Float, nullable=True),
)
"""Which Jira issue tracks which incident, per Jira notifier."""

notify_graphs = sa.Table(
    "notify_graphs",
    METADATA,
    sa.Column("graph_id", sa.String(64), primary_key=True),
    sa.Column("monitor", sa.String(256), nullable=False),
    sa.Column("png", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
)
"""PNG graphs linked from notifications, served at ``/v1/graphs/<id>.png``."""

notify_webhook_receipts = sa.Table(
    "notify_webhook_receipts",
    METADATA,
    # sha256 hex of "<source>\n<webhook-id>"
    sa.Column("receipt", sa.String(64), primary_key=True),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
)
"""The ids of the signed webhooks received, while a replay of them could still pass the
timestamp check (driftloop.notify.signatures.ReceiptStore)."""

__all__ = [
    "METADATA",
    "notify_deliveries",
    "notify_events",
    "notify_graphs",
    "notify_jira_issues",
    "notify_sent",
    "notify_webhook_receipts",
]
