"""Receipts of signed inbound webhooks: a replayed request (a ``webhook-id`` seen before) is
refused on every replica.

Revision ID: 0005
Revises: 0004

A new table, ``notify_webhook_receipts`` (the SHA-256 of each message's source and id, when it
was received and until when it is kept); nothing else changes.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def _set_schema_number(number: int) -> None:
    """``driftloop_schema`` holds one row: the schema number (what release 1 checks)."""
    schema = sa.table(
        "driftloop_schema",
        sa.column("version", sa.Integer),
        sa.column("applied_at", sa.DateTime(timezone=True)),
    )
    op.execute(schema.update().values(version=number, applied_at=datetime.now(UTC)))


def upgrade() -> None:
    op.create_table(
        "notify_webhook_receipts",
        sa.Column("receipt", sa.String(64), nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("receipt", name="pk_notify_webhook_receipts"),
    )
    op.create_index(
        "ix_notify_webhook_receipts_expires_at", "notify_webhook_receipts", ["expires_at"]
    )
    _set_schema_number(5)


def downgrade() -> None:
    op.drop_index("ix_notify_webhook_receipts_expires_at", "notify_webhook_receipts")
    op.drop_table("notify_webhook_receipts")
    _set_schema_number(4)
