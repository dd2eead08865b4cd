"""Tables of driftloop.serving: API keys (only their SHA-256 hashes), the dashboard sessions opened
with them, ground-truth feedback and the texts that came with it (training data for the models
that merge feedback), and the log of predictions that feedback is matched with."""

from __future__ import annotations

import sqlalchemy as sa

from driftloop.database import METADATA

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
    # known when the prediction log (serving_predictions) still holds the prediction
    sa.Column("version", sa.Integer, nullable=True),
    sa.Column("predicted_class", sa.String(256), nullable=True),
    sa.Column("correct", sa.Boolean, nullable=True),
    sa.Column("key_id", sa.String(16), nullable=True),
    sa.Column("received_at", sa.Float, nullable=False, index=True),
    # one label per prediction: a relabel updates the row (the latest label wins)
    sa.Index("uq_serving_feedback_model_prediction_id", "model", "prediction_id", unique=True),
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
    sa.Index(
        "uq_serving_feedback_texts_model_prediction_id", "model", "prediction_id", unique=True
    ),
)

# Every prediction the server answered, and what a shadow version predicted for the same text,
# for ``serving.prediction_log_retention``: a feedback label finds its prediction here whichever
# worker, replica or restart it reaches (driftloop.serving.prediction_log).
predictions = sa.Table(
    "serving_predictions",
    METADATA,
    sa.Column("prediction_id", sa.String(32), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("predicted_class", sa.Text, nullable=False),
    # false: the version that answered; true: a shadow that scored the same text
    sa.Column("shadow", sa.Boolean, nullable=False),
    # the first 128 bits of the scored text's SHA-256, hex (answered rows only): a text sent
    # with feedback must match it
    sa.Column("text_hash", sa.String(32), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.PrimaryKeyConstraint("prediction_id", "version", name="pk_serving_predictions"),
)

__all__ = [
    "METADATA",
    "api_keys",
    "dashboard_sessions",
    "feedback",
    "feedback_texts",
    "predictions",
]
