"""Tables of driftloop.serving: API keys (only their SHA-256 hashes), the dashboard sessions opened
with them, ground-truth feedback and the texts that came with it (training data for the models
that merge feedback)."""

from __future__ import annotations

import sqlalchemy as sa

from driftloop.store import METADATA

api_keys = sa.Table(
    "serving_api_keys",
    METADATA,
    sa.Column("key_id", sa.String(16), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("scope", sa.String(16), nullable=False),
    # sha256 hex of the whole key; the key itself is shown once, at creation, and never stored
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
)

# Dashboard sessions, server-side: logging out ends one for every replica, and each request
# re-checks the key it was opened with (driftloop.dashboard.sessions)
dashboard_sessions = sa.Table(
    "dashboard_sessions",
    METADATA,
    # sha256 hex of the session token; the token itself travels only in the signed cookie
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("key_id", sa.String(16), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False, index=True),
    sa.Column("ended_at", sa.Float, nullable=True),
)

feedback = sa.Table(
    "serving_feedback",
    METADATA,
    sa.Column("feedback_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prediction_id", sa.String(64), nullable=False, index=True),
    sa.Column("model", sa.String(64), nullable=False, index=True),
    sa.Column("label", sa.String(256), nullable=False),
    # known when the prediction is still remembered by the server that made it
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("predicted_class", sa.String(256), nullable=True),
    sa.Column("correct", sa.Boolean, nullable=True),
    sa.Column("key_id", sa.String(16), nullable=True),
    sa.Column("received_at", sa.Float, nullable=False, index=True),
)

# A label sent with its text: a production sample the retrain pipeline can learn from
# (``models.<name>.merge_feedback``). Its own table, so that a store made before it gains it.
feedback_texts = sa.Table(
    "serving_feedback_texts",
    METADATA,
    sa.Column("sample_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("prediction_id", sa.String(64), nullable=False),
    sa.Column("model", sa.String(64), nullable=False, index=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("label", sa.String(256), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=True),
    sa.Column("received_at", sa.Float, nullable=False),
)

__all__ = ["METADATA", "api_keys", "dashboard_sessions", "feedback", "feedback_texts"]
