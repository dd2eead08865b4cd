"""The registry's side of the SQL store: its rows as :class:`ModelVersion` and
:class:`AliasChange` records, and connections whose store failures become
:class:`BackendUnavailableError`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError as SqlIntegrityError
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from driftloop.database.core import Database
from driftloop.errors import BackendUnavailableError, DriftloopError
from driftloop.predictors import ReferenceProfile, evaluation_from_dict
from driftloop.registry.versions import AliasChange, ModelVersion


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def version_from_row(row: RowMapping) -> ModelVersion:
    created_at = utc(row["created_at"])
    assert created_at is not None
    return ModelVersion(
        name=row["name"],
        version=int(row["version"]),
        content_hash=row["content_hash"],
        artifact_uri=row["artifact_uri"],
        trainer=row["trainer"],
        params=dict(row["params"] or {}),
        snapshot_id=row["snapshot_id"],
        snapshot_hash=row["snapshot_hash"],
        evaluation=None if row["evaluation"] is None else evaluation_from_dict(row["evaluation"]),
        reference=(
            None if row["reference"] is None else ReferenceProfile.from_dict(row["reference"])
        ),
        parent_version=row["parent_version"],
        trigger=row["trigger"],
        created_at=created_at,
        deployed_at=utc(row["deployed_at"]),
    )


def change_from_row(row: RowMapping) -> AliasChange:
    changed_at = utc(row["changed_at"])
    assert changed_at is not None
    return AliasChange(
        name=row["name"],
        alias=row["alias"],
        version=int(row["version"]),
        previous_version=row["previous_version"],
        action=row["action"],
        actor=row["actor"],
        changed_at=changed_at,
    )


@contextmanager
def transaction(database: Database) -> Iterator[Connection]:
    """A transaction; a unique-constraint violation passes through (callers retry on it)."""
    try:
        with database.engine.begin() as connection:
            yield connection
    except (SqlIntegrityError, DriftloopError):
        raise
    except OperationalError as exc:
        raise BackendUnavailableError(
            f"store {database.safe_url} is unavailable: {exc.orig}"
        ) from exc
    except SQLAlchemyError as exc:
        raise BackendUnavailableError(f"store {database.safe_url}: {exc}") from exc


@contextmanager
def connection(database: Database) -> Iterator[Connection]:
    """A connection for reading."""
    try:
        with database.engine.connect() as opened:
            yield opened
    except DriftloopError:
        raise
    except OperationalError as exc:
        raise BackendUnavailableError(
            f"store {database.safe_url} is unavailable: {exc.orig}"
        ) from exc
    except SQLAlchemyError as exc:
        raise BackendUnavailableError(f"store {database.safe_url}: {exc}") from exc
