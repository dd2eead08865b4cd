"""The table of driftloop.leadership: one row per control-plane role (``monitors``,
``worker``), naming the process that leads it, its fencing token and until when it holds."""

from __future__ import annotations

import sqlalchemy as sa

from driftloop.database import METADATA

control_leases = sa.Table(
    "control_leases",
    METADATA,
    sa.Column("role", sa.String(32), primary_key=True),
    sa.Column("holder", sa.String(256), nullable=False),
    # raised by one at every change of holder: a deposed leader's writes carry an older token
    sa.Column("token", sa.BigInteger, nullable=False),
    sa.Column("acquired_at", sa.Float, nullable=False),
    sa.Column("renewed_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)
"""Who leads each role. Times are the database server's clock on PostgreSQL (so the
replicas' clocks need not agree), the process's own on SQLite (one process)."""
