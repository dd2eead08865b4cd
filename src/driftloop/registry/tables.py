"""Tables of driftloop.registry: model versions, aliases and the history of alias changes.

Plain SQLAlchemy Core types only (``JSON`` maps to JSON on SQLite and PostgreSQL), so the same
schema works on both.
"""

import sqlalchemy as sa

from driftloop.database import METADATA

model_versions = sa.Table(
    "registry_model_versions",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("artifact_uri", sa.Text, nullable=False),
    sa.Column("files", sa.JSON, nullable=False),  # relative path → sha256 of the artifact
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

model_aliases = sa.Table(
    "registry_model_aliases",
    METADATA,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("alias", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
)

alias_history = sa.Table(
    "registry_alias_history",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(64), nullable=False, index=True),
    sa.Column("alias", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("previous_version", sa.Integer, nullable=True),
    sa.Column("action", sa.String(16), nullable=False),  # "set" | "rollback" | "remove"
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
)

__all__ = ["METADATA", "alias_history", "model_aliases", "model_versions"]
