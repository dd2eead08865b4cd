"""Browser sessions for the dashboard: an API key, checked once at ``/login``, is exchanged for an
HttpOnly cookie signed with HMAC-SHA256 and a per-installation secret.

The cookie holds ``<payload>.<signature>``, the payload being URL-safe base64 of
``{"sub": <who>, "exp": <unix time>}``; the API key itself is never put in the cookie. The secret
lives in a file (``.driftloop/dashboard-secret``, mode 0600), created on first use, so every
process of an installation that shares that directory accepts the same cookies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from driftloop.errors import AuthError, ConfigError

SESSION_COOKIE = "driftloop_session"
SECRET_FILE = ".driftloop/dashboard-secret"  # noqa: S105  (a path, not a secret)
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
        body = json.dumps({"sub": subject, "exp": self.clock() + self.max_age},
                          separators=(",", ":"))
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
