"""Retrain jobs: several per incident (a retry after a rejected or rolled-back candidate), each
with its ``attempt`` number.

Revision ID: 0002
Revises: 0001

``retrain_jobs.incident_id`` loses its unique constraint and keeps a plain index
(``ix_retrain_jobs_incident_id``); the new column ``attempt`` (INTEGER NOT NULL, server default
1) gives every existing job attempt 1. SQLite cannot drop a constraint, so the table is rebuilt
(Alembic's batch mode: a copy with every row, then a rename); its unnamed unique constraints are
named by :data:`SQLITE_NAMES` for the rebuild. ``driftloop_schema`` says 2, so a release-1
process refuses this database instead of using it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

SQLITE_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
"""What the batch rebuild calls the constraints that release 1 left unnamed on SQLite."""


def _incident_unique_constraint() -> str:
    """The name of the unique constraint on ``retrain_jobs.incident_id``: PostgreSQL's own
    (``retrain_jobs_incident_id_key`` when release 1 or revision 0001 made it), on SQLite the
    name :data:`SQLITE_NAMES` gives it in the batch."""
    for constraint in sa.inspect(op.get_bind()).get_unique_constraints("retrain_jobs"):
        if constraint["column_names"] == ["incident_id"]:
            return constraint["name"] or "uq_retrain_jobs_incident_id"
    raise RuntimeError("retrain_jobs has no unique constraint on incident_id to drop")


def _set_schema_number(number: int) -> None:
    """``driftloop_schema`` holds one row: the schema number (what release 1 checks)."""
    schema = sa.table(
        "driftloop_schema",
        sa.column("version", sa.Integer),
        sa.column("applied_at", sa.DateTime(timezone=True)),
    )
    op.execute(schema.update().values(version=number, applied_at=datetime.now(UTC)))


def upgrade() -> None:
    unique = _incident_unique_constraint()
    with op.batch_alter_table("retrain_jobs", naming_convention=SQLITE_NAMES) as batch:
        batch.drop_constraint(unique, type_="unique")
        batch.create_index("ix_retrain_jobs_incident_id", ["incident_id"])
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="1"))
    _set_schema_number(2)


def downgrade() -> None:
    """Back to one job per incident: fails (and changes nothing) while an incident has
    several."""
    with op.batch_alter_table("retrain_jobs", naming_convention=SQLITE_NAMES) as batch:
        batch.drop_column("attempt")
        batch.drop_index("ix_retrain_jobs_incident_id")
        batch.create_unique_constraint(
            "retrain_jobs_incident_id_key"
            if op.get_bind().dialect.name == "postgresql"
            else "uq_retrain_jobs_incident_id",
            ["incident_id"],
        )
    _set_schema_number(1)
