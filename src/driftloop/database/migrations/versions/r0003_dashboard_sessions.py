"""Dashboard sessions kept in the store: logging out ends a session on the server, a revoked
key's sessions end at their next request, and every replica of the app sees the same sessions.

Revision ID: 0003
Revises: 0002

A new table, ``dashboard_sessions`` (the SHA-256 of each session token, its API key id, when it
was opened, when it expires and when it was ended); nothing else changes.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
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
        "dashboard_sessions",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_dashboard_sessions"),
    )
    op.create_index("ix_dashboard_sessions_key_id", "dashboard_sessions", ["key_id"])
    op.create_index("ix_dashboard_sessions_expires_at", "dashboard_sessions", ["expires_at"])
    _set_schema_number(3)


def downgrade() -> None:
    op.drop_index("ix_dashboard_sessions_expires_at", "dashboard_sessions")
    op.drop_index("ix_dashboard_sessions_key_id", "dashboard_sessions")
    op.drop_table("dashboard_sessions")
    _set_schema_number(2)
