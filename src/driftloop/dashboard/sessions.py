"""Browser sessions for the dashboard: an API key with the ``dashboard`` (or ``admin``) scope,
checked at ``/login``, is exchanged for a session kept in the store and an HttpOnly cookie that
names it, signed with HMAC-SHA256.

The cookie holds ``<payload>.<signature>``, the payload being URL-safe base64 of
``{"sub": <session token>, "exp": <unix time>}``; the API key itself is never put in the cookie,
and the store keeps only the SHA-256 of the token (:class:`SessionStore`). Every request looks
the session up and re-checks its key, so ``/logout`` ends a session on the server and a revoked
key's session ends at its next request, on every replica.

The signing secret comes from ``dashboard.session_secret`` in the config, else the environment
variable ``DRIFTLOOP_DASHBOARD_SECRET`` (replicas share it that way), else a file
(``.driftloop/dashboard-secret``, mode 0600) created on first use, which only the processes
sharing that directory share (:func:`resolve_session_secret`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from driftloop.database import Database
from driftloop.errors import AuthError, BackendUnavailableError, ConfigError
from driftloop.serving.tables import dashboard_sessions

SESSION_COOKIE = "driftloop_session"
SECRET_FILE = ".driftloop/dashboard-secret"  # noqa: S105  (a path, not a secret)
SECRET_ENV = "DRIFTLOOP_DASHBOARD_SECRET"  # noqa: S105  (a variable name, not a secret)
DEFAULT_SESSION_SECONDS = 12 * 3600.0
_MIN_SECRET_BYTES = 32


def load_session_secret(path: Path) -> bytes:
    """The installation's session secret, created (random, 0600) when the file is missing."""
    if path.exists():
        secret = path.read_bytes().strip()
        if len(secret) < _MIN_SECRET_BYTES:
            raise ConfigError(
                f"{path}: the dashboard session secret must have at least "
                f"{_MIN_SECRET_BYTES} bytes; delete the file to make a new one"
            )
        return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(secret)
    return secret


def resolve_session_secret(
    configured: str | None, environ: Mapping[str, str], path: Path
) -> tuple[bytes, str]:
    """The session secret and where it came from: the config's ``dashboard.session_secret``,
    else :data:`SECRET_ENV`, else the file at ``path`` (:func:`load_session_secret`)."""
    for value, origin in (
        (configured, "dashboard.session_secret"),
        (environ.get(SECRET_ENV), SECRET_ENV),
    ):
        if value:
            if len(value.encode()) < _MIN_SECRET_BYTES:
                raise ConfigError(
                    f"{origin}: the dashboard session secret must have at least "
                    f"{_MIN_SECRET_BYTES} bytes"
                )
            return value.encode(), origin
    return load_session_secret(path), str(path)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class DashboardSession:
    """Who a valid session cookie belongs to, and until when."""

    subject: str
    expires_at: float


class SessionSigner:
    """Makes and checks signed session cookie values."""

    def __init__(
        self,
        secret: bytes,
        *,
        max_age: float = DEFAULT_SESSION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < _MIN_SECRET_BYTES:
            raise ConfigError(
                f"a session secret needs at least {_MIN_SECRET_BYTES} bytes, got {len(secret)}"
            )
        self._secret = secret
        self.max_age = max_age
        self.clock = clock

    def _signature(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def sign(self, subject: str) -> str:
        """A cookie value for ``subject`` valid for :attr:`max_age` seconds."""
        body = json.dumps(
            {"sub": subject, "exp": self.clock() + self.max_age}, separators=(",", ":")
        )
        payload = _b64(body.encode())
        return f"{payload}.{self._signature(payload)}"

    def verify(self, value: str) -> DashboardSession:
        """The session in a cookie value; :class:`AuthError` if forged, malformed or expired."""
        payload, sep, signature = value.partition(".")
        if not sep or not hmac.compare_digest(signature, self._signature(payload)):
            raise AuthError("the dashboard session cookie is not valid; log in again")
        try:
            data = json.loads(_unb64(payload))
            subject, expires = str(data["sub"]), float(data["exp"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthError("the dashboard session cookie is malformed; log in again") from exc
        if expires <= self.clock():
            raise AuthError("the dashboard session has expired; log in again")
        return DashboardSession(subject, expires)


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A live session as the store has it: the API key it was opened with, and until when."""

    key_id: str
    created_at: float
    expires_at: float


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    """Dashboard sessions in the store's ``dashboard_sessions`` (only token hashes are kept)."""

    def __init__(
        self,
        database: Database,
        *,
        max_age: float = DEFAULT_SESSION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database = database
        self.max_age = max_age
        self.clock = clock

    def open(self, key_id: str) -> str:
        """A new session for ``key_id``: its token (put it in the signed cookie). Sessions that
        expired are deleted on the way."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        with self._begin() as connection:
            connection.execute(
                dashboard_sessions.delete().where(dashboard_sessions.c.expires_at <= now)
            )
            connection.execute(
                dashboard_sessions.insert().values(
                    token_hash=_token_hash(token),
                    key_id=key_id,
                    created_at=now,
                    expires_at=now + self.max_age,
                    ended_at=None,
                )
            )
        return token

    def find(self, token: str) -> StoredSession:
        """The live session of ``token``; :class:`AuthError` if unknown, ended or expired."""
        with self._begin() as connection:
            row = (
                connection.execute(
                    sa.select(dashboard_sessions).where(
                        dashboard_sessions.c.token_hash == _token_hash(token)
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise AuthError("no such dashboard session; log in again")
        if row["ended_at"] is not None:
            raise AuthError("this dashboard session was ended (logged out); log in again")
        if float(row["expires_at"]) <= self.clock():
            raise AuthError("the dashboard session has expired; log in again")
        return StoredSession(str(row["key_id"]), float(row["created_at"]), float(row["expires_at"]))

    def end(self, token: str) -> None:
        """End the session of ``token`` (logging out); ending it twice is harmless."""
        with self._begin() as connection:
            connection.execute(
                dashboard_sessions.update()
                .where(
                    dashboard_sessions.c.token_hash == _token_hash(token),
                    dashboard_sessions.c.ended_at.is_(None),
                )
                .values(ended_at=self.clock())
            )

    @contextmanager
    def _begin(self) -> Iterator[sa.Connection]:
        try:
            with self.database.engine.begin() as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise BackendUnavailableError(
                f"dashboard sessions: cannot use the store {self.database.safe_url}"
            ) from exc
