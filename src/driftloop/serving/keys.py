"""API keys with scopes: created once, stored only as SHA-256 hashes, checked in constant time.

A key looks like ``dl_<key id>_<secret>``; the key id (8 hex digits) names the key in listings
and for revocation, the secret is 32 random bytes. Only ``sha256(key)`` is stored; a presented
key is looked up by its key id and its hash compared with :func:`hmac.compare_digest`.

Scopes: ``predict`` (predict, feedback, describe models), ``label`` (feedback only: a labelling
tool), ``dashboard`` (log into the dashboard and read what it shows, nothing else), ``insights``
(``POST /v1/insights`` only: a service that serves its own model), ``register``
(``POST /v1/models/{name}/versions`` and ``GET /v1/models/{name}/training-data`` only: a
training workflow reading its rows and uploading a candidate, which the retrain pipeline gates)
and ``admin`` (everything, including deploy, rollback, reload and the dashboard). Verified keys
are cached for :data:`CACHE_SECONDS`, so a key revoked by another process stops working within
that time (at once in this process).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from driftloop.database import Database
from driftloop.errors import (
    AuthError,
    BackendUnavailableError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
)
from driftloop.serving.tables import api_keys

logger = logging.getLogger(__name__)

KEY_PREFIX = "dl_"
CACHE_SECONDS = 5.0
_KEY_FORMAT = re.compile(r"^dl_([0-9a-f]{8})_[A-Za-z0-9_-]{20,}$")


class Scope(StrEnum):
    PREDICT = "predict"
    LABEL = "label"
    DASHBOARD = "dashboard"
    INSIGHTS = "insights"
    REGISTER = "register"
    ADMIN = "admin"

    def allows(self, required: Scope) -> bool:
        """``admin`` implies every other scope, ``predict`` implies ``label`` (a client sends the
        true labels of its own predictions); the others allow only themselves."""
        return (
            self is Scope.ADMIN
            or self is required
            or (self is Scope.PREDICT and required is Scope.LABEL)
        )


@dataclass(frozen=True)
class ApiKeyInfo:
    """What is known about a key, without the key."""

    key_id: str
    name: str
    scope: Scope
    created_at: float
    revoked_at: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def require(self, scope: Scope) -> None:
        if not self.scope.allows(scope):
            raise ForbiddenError(
                f"API key {self.key_id} ({self.name}) has scope {self.scope.value!r}; "
                f"this endpoint needs {scope.value!r}"
            )


@dataclass(frozen=True)
class CreatedApiKey:
    """A new key: :attr:`key` is shown once and cannot be recovered."""

    key: str
    info: ApiKeyInfo


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scope(value: str) -> Scope:
    try:
        return Scope(value)
    except ValueError:
        known = ", ".join(s.value for s in Scope)
        raise InvalidInputError(f"unknown scope {value!r}; known scopes: {known}") from None


class ApiKeyStore:
    """Creates, lists, revokes and verifies API keys in the store's ``serving_api_keys``."""

    def __init__(self, database: Database, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.database = database
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[ApiKeyInfo, float]] = {}
        self._lock = threading.Lock()

    def create(self, scope: Scope | str, *, name: str | None = None) -> CreatedApiKey:
        scope = parse_scope(scope) if isinstance(scope, str) else scope
        if name is not None and not 0 < len(name) <= 128:
            raise InvalidInputError("an API key name must have 1 to 128 characters")
        key_id = secrets.token_hex(4)
        key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        info = ApiKeyInfo(key_id, name or f"key-{key_id}", scope, time.time(), None)
        with self._begin() as connection:
            connection.execute(
                api_keys.insert().values(
                    key_id=info.key_id,
                    name=info.name,
                    scope=info.scope.value,
                    key_hash=hash_key(key),
                    created_at=info.created_at,
                    revoked_at=None,
                )
            )
        logger.info(
            "API key %s created: scope %s, name %r", info.key_id, info.scope.value, info.name
        )
        return CreatedApiKey(key, info)

    def list(self, *, include_revoked: bool = True) -> list[ApiKeyInfo]:
        query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        with self._begin() as connection:
            return [_info(row) for row in connection.execute(query).mappings()]

    def revoke(self, key_id: str) -> ApiKeyInfo:
        """Revoke a key by its id (or by the full key); revoking twice is harmless."""
        match = _KEY_FORMAT.match(key_id)
        if match:
            key_id = match.group(1)
        with self._begin() as connection:
            row = (
                connection.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id))
                .mappings()
                .first()
            )
            if row is None:
                raise NotFoundError(f"no API key with id {key_id!r}")
            if row["revoked_at"] is None:
                connection.execute(
                    api_keys.update()
                    .where(api_keys.c.key_id == key_id)
                    .values(revoked_at=time.time())
                )
            row = (
                connection.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id))
                .mappings()
                .one()
            )
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if v[0].key_id != key_id}
        logger.info("API key %s revoked", key_id)
        return _info(row)

    def current(self, key_id: str) -> ApiKeyInfo:
        """The key ``key_id`` as the store has it now (never from the cache); :class:`AuthError`
        when it no longer exists or was revoked."""
        with self._begin() as connection:
            row = (
                connection.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id))
                .mappings()
                .first()
            )
        if row is None:
            raise AuthError(f"API key {key_id} no longer exists")
        info = _info(row)
        if info.revoked:
            raise AuthError(f"API key {info.key_id} was revoked")
        return info

    def cached(self, key: str) -> ApiKeyInfo | None:
        """The verified key from the cache, or None (then call :meth:`authenticate`)."""
        entry = self._cache.get(hash_key(key))
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def authenticate(self, key: str) -> ApiKeyInfo:
        """The key's info; :class:`AuthError` for a malformed, unknown or revoked key."""
        digest = hash_key(key)
        match = _KEY_FORMAT.match(key)
        if match is None:
            raise AuthError("malformed API key")
        with self._begin() as connection:
            row = (
                connection.execute(sa.select(api_keys).where(api_keys.c.key_id == match.group(1)))
                .mappings()
                .first()
            )
        if row is None or not hmac.compare_digest(str(row["key_hash"]), digest):
            raise AuthError("unknown API key")
        info = _info(row)
        if info.revoked:
            raise AuthError(f"API key {info.key_id} was revoked")
        with self._lock:
            self._cache[digest] = (info, time.monotonic() + self.cache_seconds)
        return info

    @contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        try:
            with self.database.engine.begin() as connection:
                yield connection
        except SQLAlchemyError as exc:
            # the statement and its values stay in the log: the answer may go to anyone
            logger.warning("API keys: the store %s failed: %s", self.database.safe_url, exc)
            raise BackendUnavailableError(
                "API keys: the store is unavailable; try again later"
            ) from exc


def _info(row: sa.RowMapping) -> ApiKeyInfo:
    return ApiKeyInfo(
        key_id=str(row["key_id"]),
        name=str(row["name"]),
        scope=Scope(row["scope"]),
        created_at=float(row["created_at"]),
        revoked_at=None if row["revoked_at"] is None else float(row["revoked_at"]),
    )
