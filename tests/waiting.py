"""Waiting in tests for something that happens in the background: poll a condition until it
holds, failing with what was awaited once the time is up.

Time limits here bound a failure, not the speed of a pass: on a loaded CI machine one event
loop turn or garbage collection can stall for seconds, so limits are generous and a test's
claim lies in the condition, not in how soon it held."""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio


def wait_for(
    condition: Callable[[], object], timeout: float, what: str, *, interval: float = 0.02
) -> None:
    """Poll ``condition()`` until it is true."""
    started = time.monotonic()
    while not condition():
        waited = time.monotonic() - started
        assert waited < timeout, f"timed out after {waited:.1f}s waiting for {what}"
        time.sleep(interval)


async def wait_until(
    condition: Callable[[], object], what: str, *, timeout: float = 30.0, interval: float = 0.01
) -> None:
    """:func:`wait_for` in an event loop: the loop goes on serving while it waits."""
    started = time.monotonic()
    while not condition():
        waited = time.monotonic() - started
        assert waited < timeout, f"timed out after {waited:.1f}s waiting for {what}"
        await anyio.sleep(interval)
