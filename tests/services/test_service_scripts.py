"""The mechanism of scripts/services/*.sh, exercised on an isolated PostgreSQL instance."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from driftloop.store import Database

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "services" / "postgres.sh"


@pytest.fixture
def services_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    with tempfile.TemporaryDirectory(prefix="driftloop-services-") as name:
        os.chmod(name, 0o755)  # noqa: S103 - the postgres user must traverse it
        yield Path(name)
        subprocess.run([str(SCRIPT), "stop"], env=_env(Path(name)), check=False, timeout=120)


def _env(services_dir: Path) -> dict[str, str]:
    return {**os.environ, "DRIFTLOOP_SERVICES_DIR": str(services_dir)}


def _run(services_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        env=_env(services_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _running(pid: int) -> bool:
    """Whether PID is a live process; an exited one not yet reaped (a zombie) is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.postgres
def test_start_is_idempotent_and_stop_is_by_pid(services_dir: Path) -> None:
    first = _run(services_dir, "start")
    assert first.returncode == 0, first.stderr
    url = first.stdout.strip()
    state = services_dir / "postgres"
    pid = int((state / "pid").read_text())
    port = int((state / "port").read_text())
    assert url == f"postgresql+psycopg://postgres@127.0.0.1:{port}/driftloop"
    assert _running(pid)

    again = _run(services_dir, "start")
    assert (again.returncode, again.stdout.strip()) == (0, url)
    assert int((state / "pid").read_text()) == pid

    status = _run(services_dir, "status")
    assert status.returncode == 0
    assert f"pid={pid}" in status.stdout
    assert _run(services_dir, "url").stdout.strip() == url

    database = Database(url)
    try:
        with database.engine.connect() as connection:
            assert connection.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        database.dispose()

    stop = _run(services_dir, "stop")
    assert stop.returncode == 0, stop.stderr
    assert not _running(pid)
    assert not (state / "pid").exists()
    stopped = _run(services_dir, "status")
    assert (stopped.returncode, stopped.stdout.split()[0]) == (3, "stopped")
    url_when_stopped = _run(services_dir, "url")
    assert url_when_stopped.returncode == 1
    assert "not running" in url_when_stopped.stderr


def test_unknown_command_prints_usage(services_dir: Path) -> None:
    result = _run(services_dir, "launch")
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert "start" in result.stderr
