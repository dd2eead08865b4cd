"""The relational store (SQLite by default, PostgreSQL at scale) shared by the registry, the
metric store, the monitor engine and the job queue, each owning its own tables."""

from driftloop.database.core import METADATA, Database, open_database

__all__ = ["METADATA", "Database", "open_database"]
