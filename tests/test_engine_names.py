"""The monitor engine and the database engine have names that say which is which."""

from __future__ import annotations

from pathlib import Path

from driftloop.monitors.engine import MonitorEngine
from driftloop.system import DriftloopSystem
from driftloop.testing.configs import make_config


def test_the_system_calls_its_monitor_engine_so_and_keeps_the_old_name(tmp_path: Path) -> None:
    system = DriftloopSystem(make_config(tmp_path))

    assert isinstance(system.monitor_engine, MonitorEngine)
    assert system.engine is system.monitor_engine  # the old name still reads
    assert not hasattr(system.router, "_engine")
    assert system.router._database_engine is system.database.engine
