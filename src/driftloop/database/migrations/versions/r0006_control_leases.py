"""The control plane's leases: which process leads monitor evaluation and notification
delivery (``monitors``), and which the retrain worker (``worker``), under which fencing token.

Revision ID: 0006
Revises: 0005

A new table, ``control_leases`` (one row per role: holder, token, acquired, renewed and expiry
times); nothing else changes.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
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
        "control_leases",
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("acquired_at", sa.Float, nullable=False),
        sa.Column("renewed_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("role", name="pk_control_leases"),
    )
    _set_schema_number(6)


def downgrade() -> None:
    op.drop_table("control_leases")
    _set_schema_number(5)
