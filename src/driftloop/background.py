"""One background loop for the periodic work of a process: the monitor engine's evaluations,
the retrain worker's polling, a running step's heartbeat, the insights client's flushes and
the prediction log's writes.

A :class:`BackgroundLoop` runs ``step`` in a daemon thread, then waits ``interval`` seconds (or
until :meth:`~BackgroundLoop.wake`), again and again until :meth:`~BackgroundLoop.stop`. A step
that raises is logged and the loop goes on (a store blip must not end the loop); a step that
returns ``True`` has more work waiting and runs again at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class BackgroundLoop:
    """``step`` every ``interval`` seconds in a thread named ``name``; ``failure`` is what the
    log says (at ``failure_level``) when a step raises. With ``wait_first``, the loop waits an
    interval before the first step."""

    def __init__(
        self,
        step: Callable[[], bool | None],
        interval: float,
        *,
        name: str,
        logger: logging.Logger,
        failure: str,
        failure_level: int = logging.ERROR,
        wait_first: bool = False,
    ) -> None:
        self.step = step
        self.interval = interval
        self.name = name
        self.logger = logger
        self.failure = failure
        self.failure_level = failure_level
        self.wait_first = wait_first
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (nothing while it runs; a stopped loop starts again)."""
        if self.running:
            return
        if self._stop.is_set():  # a restart: forget the wake that stopped it
            self._stop.clear()
            self._wake.clear()
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """End the current wait now: the next step runs at once."""
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the step in progress and wait up to ``timeout`` seconds for the thread."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def run(self) -> None:
        """The loop itself, in the calling thread, until :meth:`stop`."""
        if self.wait_first and not self._pause():
            return
        while not self._stop.is_set():
            try:
                again = self.step()
            except Exception:
                self.logger.log(self.failure_level, self.failure, exc_info=True)
                again = False
            if not again and not self._pause():
                return

    def _pause(self) -> bool:
        """Wait out the interval (or a wake); False once the loop is stopped."""
        self._wake.wait(self.interval)
        self._wake.clear()
        return not self._stop.is_set()
