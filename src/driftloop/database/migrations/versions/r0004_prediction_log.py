"""The prediction log in the store, and one feedback label per prediction.

Revision ID: 0004
Revises: 0003

A new table, ``serving_predictions``: every prediction a server answered (and what a shadow
version predicted for the same text), with a hash of the scored text, kept for
``serving.prediction_log_retention``; feedback labels are matched with it whichever worker,
replica or restart they reach. ``serving_feedback`` and ``serving_feedback_texts`` get a unique
index on ``(model, prediction_id)``: a relabel updates the row, the latest label wins. Stores
that hold several labels of one prediction keep the last one received (the highest
``feedback_id`` / ``sample_id``) and lose the others.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

ONE_LABEL_PER_PREDICTION = {
    "serving_feedback": ("feedback_id", "uq_serving_feedback_model_prediction_id"),
    "serving_feedback_texts": ("sample_id", "uq_serving_feedback_texts_model_prediction_id"),
}
"""Table: (its row id column, the name of its unique index on ``(model, prediction_id)``)."""


def _set_schema_number(number: int) -> None:
    """``driftloop_schema`` holds one row: the schema number (what release 1 checks)."""
    schema = sa.table(
        "driftloop_schema",
        sa.column("version", sa.Integer),
        sa.column("applied_at", sa.DateTime(timezone=True)),
    )
    op.execute(schema.update().values(version=number, applied_at=datetime.now(UTC)))


def _keep_the_latest_label(name: str, row_id: str) -> None:
    """Delete every row of ``name`` but the newest of each ``(model, prediction_id)``."""
    table = sa.table(
        name,
        sa.column(row_id, sa.Integer),
        sa.column("model", sa.String),
        sa.column("prediction_id", sa.String),
    )
    newest = sa.select(sa.func.max(table.c[row_id])).group_by(table.c.model, table.c.prediction_id)
    op.execute(table.delete().where(table.c[row_id].not_in(newest)))


def upgrade() -> None:
    op.create_table(
        "serving_predictions",
        sa.Column("prediction_id", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("predicted_class", sa.Text, nullable=False),
        sa.Column("shadow", sa.Boolean, nullable=False),
        sa.Column("text_hash", sa.String(32), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("prediction_id", "version", name="pk_serving_predictions"),
    )
    op.create_index("ix_serving_predictions_created_at", "serving_predictions", ["created_at"])
    for table, (row_id, index) in ONE_LABEL_PER_PREDICTION.items():
        _keep_the_latest_label(table, row_id)
        op.create_index(index, table, ["model", "prediction_id"], unique=True)
    _set_schema_number(4)


def downgrade() -> None:
    for table, (_, index) in ONE_LABEL_PER_PREDICTION.items():
        op.drop_index(index, table)
    op.drop_index("ix_serving_predictions_created_at", "serving_predictions")
    op.drop_table("serving_predictions")
    _set_schema_number(3)
