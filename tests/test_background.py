"""The one background loop: steps every interval, survives a failing step, wakes, stops."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from driftloop.background import BackgroundLoop

LOGGER = logging.getLogger("driftloop.test_background")


def wait_for(condition: threading.Event, seconds: float = 5.0) -> None:
    assert condition.wait(seconds), "the loop did not get there"


def test_a_failing_step_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    third = threading.Event()

    def step() -> None:
        calls.append(len(calls))
        if len(calls) == 3:
            third.set()
        if len(calls) == 1:
            raise RuntimeError("a store blip")

    loop = BackgroundLoop(step, 0.01, name="test-loop", logger=LOGGER, failure="step failed")
    with caplog.at_level(logging.ERROR, logger=LOGGER.name):
        loop.start()
        wait_for(third)
        loop.stop(5)

    assert not loop.running
    assert [r.getMessage() for r in caplog.records] == ["step failed"]
    assert caplog.records[0].exc_info is not None


def test_wait_first_waits_and_wake_ends_the_wait_at_once() -> None:
    ran = threading.Event()
    loop = BackgroundLoop(
        ran.set, 60.0, name="test-loop", logger=LOGGER, failure="x", wait_first=True
    )
    loop.start()
    assert not ran.wait(0.1)  # an interval first

    started = time.monotonic()
    loop.wake()
    wait_for(ran)
    loop.stop(5)

    assert time.monotonic() - started < 5


def test_a_step_with_more_work_runs_again_without_waiting_and_stop_ends_the_run() -> None:
    done = threading.Event()
    left = [3]

    def step() -> bool:
        left[0] -= 1
        if left[0] == 0:
            done.set()
        return left[0] > 0

    loop = BackgroundLoop(step, 60.0, name="test-loop", logger=LOGGER, failure="x")
    runner = threading.Thread(target=loop.run)
    runner.start()
    wait_for(done)  # three steps, no 60 s pause between them
    loop.stop()
    runner.join(5)

    assert not runner.is_alive()
    assert left == [0]
