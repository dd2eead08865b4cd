"""A clock for tests: time that moves only when the test moves it or the code under test
sleeps. Pass the clock where driftloop takes ``clock: Callable[[], float]`` and its
:meth:`ManualClock.sleep` where it takes ``sleep``."""

from __future__ import annotations

from collections.abc import Callable


class ManualClock:
    """Time that moves only when a test (``now``, :meth:`advance`) or a ``sleep`` moves it.

    ``sleeps`` records every sleep; ``on_sleep(now)`` runs after each one, where a test plays
    what happens meanwhile (a CI workflow finishing, a worker dying)."""

    def __init__(
        self, now: float = 1_000.0, *, on_sleep: Callable[[float], None] | None = None
    ) -> None:
        self.now = now
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move time on by ``seconds``, without counting a sleep; the new time."""
        self.now += seconds
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep(self.now)
