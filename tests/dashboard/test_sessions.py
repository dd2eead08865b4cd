"""Signed session cookies and the per-installation secret."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from driftloop.dashboard import SessionSigner, load_session_secret
from driftloop.errors import AuthError, ConfigError

SECRET = b"s" * 32


def test_a_signed_session_verifies_until_it_expires() -> None:
    now = [1000.0]
    signer = SessionSigner(SECRET, max_age=60, clock=lambda: now[0])
    cookie = signer.sign("key-1234")
    session = signer.verify(cookie)
    assert session.subject == "key-1234"
    assert session.expires_at == 1060.0
    now[0] = 1060.0
    with pytest.raises(AuthError, match="expired"):
        signer.verify(cookie)


def test_tampered_or_foreign_cookies_are_rejected() -> None:
    signer = SessionSigner(SECRET)
    payload, _, signature = signer.sign("key-1").partition(".")
    forged_payload = SessionSigner(b"x" * 32).sign("admin").partition(".")[0]
    with pytest.raises(AuthError, match="not valid"):
        signer.verify(f"{forged_payload}.{signature}")
    with pytest.raises(AuthError, match="not valid"):
        signer.verify(SessionSigner(b"x" * 32).sign("key-1"))
    with pytest.raises(AuthError):
        signer.verify(payload)


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        SessionSigner(b"short")


def test_the_secret_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / ".driftloop" / "dashboard-secret"
    first = load_session_secret(path)
    assert len(first) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_session_secret(path) == first
    path.write_bytes(b"tiny")
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        load_session_secret(path)
