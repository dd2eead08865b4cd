"""The clock and the configuration factory every test shares (driftloop.testing)."""

from __future__ import annotations

from pathlib import Path

from driftloop.testing.clock import ManualClock
from driftloop.testing.configs import make_config
from driftloop.testing.soak import Phase


def test_the_manual_clock_moves_only_when_moved_or_slept() -> None:
    seen: list[float] = []
    clock = ManualClock(100.0, on_sleep=seen.append)

    assert clock() == 100.0
    assert clock.advance(5) == 105.0
    clock.sleep(10)
    clock.sleep(2.5)

    assert clock() == 117.5
    assert clock.sleeps == [10, 2.5]
    assert seen == [115.0, 117.5]


def test_make_config_validates_sections_and_puts_the_store_under_base_dir(tmp_path: Path) -> None:
    config = make_config(tmp_path, transport="local://", insights={"outbox": "outbox"})

    assert config.store == f"sqlite:///{tmp_path}/driftloop.db"
    assert config.base_dir == tmp_path
    assert config.transport == "local://"
    assert make_config(store="sqlite:///x.db").store == "sqlite:///x.db"


def test_a_soak_phase_counts_answers_per_window() -> None:
    phase = Phase(seconds=12.0, answered_at=[0.1, 0.2, 4.9, 5.0, 9.99, 10.5, 11.9])

    assert phase.answered_between(0, 5) == 3
    assert phase.answered_between(5, 12) == 4
    assert phase.answered_per_window(5.0) == [3, 2]  # the last 2 s are no whole window
    assert phase.answered_per_window(5.0, span=9.0) == [3]
