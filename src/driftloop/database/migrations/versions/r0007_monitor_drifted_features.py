"""The features a ``feature.*`` drift monitor saw drift, kept with its group's state.

Revision ID: 0007
Revises: 0006

A new nullable column ``monitor_states.drifted_features`` (TEXT: a JSON list of feature names,
NULL for every other monitor); existing rows keep NULL, nothing else changes.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
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
    op.add_column("monitor_states", sa.Column("drifted_features", sa.Text(), nullable=True))
    _set_schema_number(7)


def downgrade() -> None:
    with op.batch_alter_table("monitor_states") as batch:
        batch.drop_column("drifted_features")
    _set_schema_number(6)
