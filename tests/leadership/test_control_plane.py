"""The roles a process leads: elected at start when the lease is free, a follower taking over
after a clean stop, the log lines that say so, and on SQLite one process per role (a second is
refused with the holder's pid, also as a real ``driftloop worker`` process)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from driftloop.database import Database
from driftloop.leadership import ControlPlane, ControlProcessLockedError, Role
from waiting import wait_for

DRIFTLOOP = str(Path(sys.executable).parent / "driftloop")


def plane(database: Database, holder: str, role: str, events: list[str]) -> ControlPlane:
    return ControlPlane(
        database,
        [
            Role(
                role,
                lambda: events.append(f"{holder} leads"),
                lambda: events.append(f"{holder} stops"),
            )
        ],
        holder=holder,
        lease_duration=1.0,
        renew_interval=0.1,
    )


@pytest.mark.postgres
def test_a_follower_takes_over_when_the_leader_stops(
    fresh_postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    database = Database(fresh_postgres_url)
    database.migrate()
    events: list[str] = []
    first, second = (plane(database, name, "monitors", events) for name in ("p1", "p2"))
    try:
        with caplog.at_level(logging.INFO, logger="driftloop.leadership"):
            first.start()
            second.start()
            assert first.leads("monitors")
            assert not second.leads("monitors")
            first.stop()  # releases the lease: the follower needs no expiry
            wait_for(lambda: second.leads("monitors"), 30, "the follower to lead")
        assert events == ["p1 leads", "p1 stops", "p2 leads"]
        lines = [r.getMessage() for r in caplog.records]
        assert "process p1 became leader of the monitors role (lease token 1)" in lines
        assert "process p2 became leader of the monitors role (lease token 2)" in lines
    finally:
        second.stop()
        database.dispose()


def test_a_second_control_process_on_sqlite_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'driftloop.db'}")
    database.migrate()
    events: list[str] = []
    first = plane(database, "p1", "worker", events)
    first.start()
    try:
        with pytest.raises(
            ControlProcessLockedError,
            match=rf"worker role of this SQLite store: pid {os.getpid()}: ",
        ):
            plane(database, "p2", "worker", events).start()
        plane(database, "p3", "monitors", events).stop()  # another role is free
        (tmp_path / "driftloop.yaml").write_text(f"store: sqlite:///{tmp_path / 'driftloop.db'}\n")
        second = subprocess.run(
            [DRIFTLOOP, "worker", "--config", str(tmp_path / "driftloop.yaml")],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")},
        )
        assert second.returncode == 1, second.stdout + second.stderr
        assert (
            f"another process already runs the control plane's worker role of this SQLite "
            f"store: pid {os.getpid()}" in second.stderr + second.stdout
        )
        assert "Traceback" not in second.stderr
    finally:
        first.stop()
    restarted = plane(database, "p4", "worker", events)  # the lock went with the process
    restarted.start()
    assert restarted.leads("worker")
    restarted.stop()
    database.dispose()
