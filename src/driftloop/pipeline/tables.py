"""Tables of the retrain pipeline: the durable job queue and each job's steps."""

from __future__ import annotations

import sqlalchemy as sa

from driftloop.database import METADATA

retrain_jobs = sa.Table(
    "retrain_jobs",
    METADATA,
    sa.Column("job_id", sa.String(32), primary_key=True),
    sa.Column("model", sa.String(64), nullable=False, index=True),
    # an incident may have several jobs: a retry after a rejected or rolled-back candidate
    sa.Column("incident_id", sa.String(64), nullable=True, index=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    # Set to the model name while the job is not finished, NULL after: the unique index makes
    # "one active job per model" a database invariant, whatever the number of callers.
    sa.Column("active_model", sa.String(64), nullable=True, unique=True),
    sa.Column("trigger", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("attached_alerts", sa.Integer, nullable=False, default=0),
    sa.Column("snapshot_id", sa.String(64), nullable=True),
    sa.Column("previous_version", sa.Integer, nullable=True),
    sa.Column("candidate_version", sa.Integer, nullable=True),
    sa.Column("result", sa.JSON, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("worker", sa.String(128), nullable=True),
    sa.Column("heartbeat_at", sa.Float, nullable=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("deployed_at", sa.Float, nullable=True),
    # the job's number among its incident's jobs (1: the first; a retry counts on)
    sa.Column("attempt", sa.Integer, nullable=False, server_default="1"),
)

job_steps = sa.Table(
    "retrain_job_steps",
    METADATA,
    sa.Column("step_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(32), sa.ForeignKey("retrain_jobs.job_id"), index=True),
    sa.Column("step", sa.String(16), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("outcome", sa.String(16), nullable=True),
    sa.Column("log", sa.Text, nullable=False, default=""),
)
