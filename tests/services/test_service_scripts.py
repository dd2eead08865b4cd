"""The mechanism of scripts/services/*.sh, exercised on an isolated PostgreSQL instance."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from driftloop.database import Database

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


def _state_root(checkout: Path) -> str:
    """The state folder the service scripts of a checkout at ``checkout`` choose."""
    scripts = checkout / "scripts" / "services"
    scripts.mkdir(parents=True)
    lib = SCRIPT.parent / "service-lib.sh"
    (scripts / lib.name).write_text(lib.read_text())
    env = {k: v for k, v in os.environ.items() if k != "DRIFTLOOP_SERVICES_DIR"}
    result = subprocess.run(
        ["bash", "-c", f'SVC_NAME=probe; source "{scripts / lib.name}"; echo "$SVC_ROOT"'],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


def test_a_checkout_others_cannot_enter_keeps_service_state_where_they_can() -> None:
    """A 0700 home or temporary folder: PostgreSQL, run as its own user, could not reach
    <checkout>/.services, so root's services keep their state under /tmp instead; an open
    checkout keeps it inside."""
    with (
        tempfile.TemporaryDirectory(prefix="driftloop-closed-") as closed,
        tempfile.TemporaryDirectory(prefix="driftloop-open-") as opened,
    ):
        os.chmod(closed, 0o700)
        os.chmod(opened, 0o755)  # noqa: S103 - the point of the test: a folder others can enter
        inside_closed = _state_root(Path(closed) / "repo")
        inside_open = _state_root(Path(opened) / "repo")
    assert inside_open == str(Path(opened).resolve() / "repo" / ".services")
    if os.geteuid() == 0:
        assert inside_closed.startswith("/tmp/driftloop-services-")
    else:  # the servers run as this user: the checkout's own folder is reachable
        assert inside_closed == str(Path(closed).resolve() / "repo" / ".services")
