"""Signed session cookies and the per-installation secret."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dashboard.world import DashboardWorld
from driftloop.dashboard import (
    SECRET_ENV,
    SessionSigner,
    SessionStore,
    load_session_secret,
    resolve_session_secret,
)
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


def test_the_secret_comes_from_the_config_then_the_environment_then_a_file(tmp_path: Path) -> None:
    path = tmp_path / "dashboard-secret"
    configured = "c" * 40
    assert resolve_session_secret(configured, {SECRET_ENV: "e" * 40}, path) == (
        configured.encode(),
        "dashboard.session_secret",
    )
    assert resolve_session_secret(None, {SECRET_ENV: "e" * 40}, path) == (b"e" * 40, SECRET_ENV)
    assert not path.exists()
    secret, origin = resolve_session_secret(None, {}, path)
    assert origin == str(path)
    assert secret == path.read_bytes()
    with pytest.raises(ConfigError, match=f"{SECRET_ENV}: .* at least 32 bytes"):
        resolve_session_secret(None, {SECRET_ENV: "short"}, path)


def test_stored_sessions_expire_end_and_are_purged(world: DashboardWorld) -> None:
    now = [1000.0]
    sessions = SessionStore(world.database, max_age=60, clock=lambda: now[0])
    token = sessions.open("abcd1234")
    found = sessions.find(token)
    assert (found.key_id, found.expires_at) == ("abcd1234", 1060.0)
    with pytest.raises(AuthError, match="no such dashboard session"):
        sessions.find("not-a-token")
    sessions.end(token)
    sessions.end(token)
    with pytest.raises(AuthError, match="logged out"):
        sessions.find(token)
    short = sessions.open("abcd1234")
    now[0] = 1200.0
    with pytest.raises(AuthError, match="expired"):
        sessions.find(short)
    sessions.open("abcd1234")  # opening one deletes those that expired
    with pytest.raises(AuthError, match="no such dashboard session"):
        sessions.find(short)
