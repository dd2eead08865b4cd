"""The notification router: monitor events in, deliveries out.

Each event goes to every ``@handle`` it mentions (``log`` when it mentions none). Per handle the
router claims the idempotency key (event id, notifier) in the store, so an event reaches a
notifier once even across restarts and replicas; sends with retries (exponential backoff with
jitter on 5xx, 429 and network failures, honouring ``Retry-After``); and logs every attempt in
``notify_deliveries``.

Use it synchronously (``router.dispatch(event)``) or in the background (``router.start()``, then
``router(event)`` only queues; queued events are in the store and replayed after a restart).

Its parts: the config checks (:mod:`~driftloop.notify.route_checks`), assembling a notification
(:mod:`~driftloop.notify.assembly`), and the store of events, claims and attempts
(:mod:`~driftloop.notify.delivery_log`); this module delivers, with retries, and runs the
background worker.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from sqlalchemy.engine import Connection

from driftloop.config import Config, RetrainNotifierConfig
from driftloop.database.core import Database
from driftloop.errors import BackendUnavailableError, ConfigError, DriftloopError
from driftloop.metrics.points import MetricStore, SeriesPoint
from driftloop.monitors.events import Event
from driftloop.monitors.timeline import TimelineEntry
from driftloop.notify.assembly import NotificationAssembler, SeriesSource
from driftloop.notify.base import (
    DeliveryResult,
    Notification,
    Notifier,
    ThresholdLines,
    event_handles,
)
from driftloop.notify.delivery_log import DeliveryAttempt, DeliveryLog
from driftloop.notify.graphs import GraphStore
from driftloop.notify.plugins import NotifierContext, build_notifier
from driftloop.notify.retrain import EnqueueRetrain
from driftloop.notify.route_checks import check_retrain_routes, check_templates

logger = logging.getLogger(__name__)

BUILTIN_HANDLES = ("log", "retrain")

__all__ = [
    "BUILTIN_HANDLES",
    "DeliveryAttempt",
    "NotificationRouter",
    "RetryPolicy",
    "SeriesSource",
]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits ``base * 2**(n-1)`` (capped), minus up
    to ``jitter`` of it at random; a ``Retry-After`` answer is waited exactly, unless it asks
    for more than ``max_retry_after``, which ends the retries."""

    max_attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0
    jitter: float = 0.5
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError("max_attempts must be at least 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ConfigError("jitter must lie between 0 and 1")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        delay = min(self.max_delay, self.base_delay * float(2 ** (attempt - 1)))
        return delay * (1.0 - self.jitter * rng.random())


class _InterruptedError(Exception):
    pass


_STOP = object()


class NotificationRouter:
    """Routes monitor events to notifiers; callable as a monitor-engine listener."""

    def __init__(
        self,
        config: Config,
        database: Database,
        *,
        notifiers: Mapping[str, Notifier] | None = None,
        enqueue_retrain: EnqueueRetrain | None = None,
        graph_store: GraphStore | None = None,
        series_source: SeriesSource | None = None,
        metric_store: MetricStore | None = None,
        dashboard_url: Callable[[Event], str] | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
        timeout: float = 10.0,
        queue_size: int = 10_000,
        claim_timeout: float = 900.0,
        require_routes: bool = True,
    ) -> None:
        self.config = config
        self.database = database
        self._database_engine = database.engine
        self.graph_store = graph_store or GraphStore(database, clock=clock)
        self.log = DeliveryLog(database, clock=clock, claim_timeout=claim_timeout)
        self.assembler = NotificationAssembler(
            config,
            self.log,
            series_source=series_source,
            metric_store=metric_store,
            dashboard_url=dashboard_url,
        )
        self.retry = retry or RetryPolicy()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._timeout = timeout
        self._enqueue_retrain = enqueue_retrain
        self._notifiers: dict[str, Notifier] = dict(notifiers or {})
        for name, notifier in self._notifiers.items():
            notifier.name = notifier.name or name
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        check_templates(config)
        for name, entry in config.notifiers.items():
            if not isinstance(entry, RetrainNotifierConfig):
                self.notifier(name)  # fail early on a notifier that cannot be built
        if require_routes and self._enqueue_retrain is None:
            check_retrain_routes(config, given=self._notifiers)

    @property
    def fence(self) -> Callable[[Connection], None] | None:
        """Called first in every write (claims, the delivery log, routed events): the control
        plane's fence, which refuses them once this process no longer leads."""
        return self.log.fence

    @fence.setter
    def fence(self, fence: Callable[[Connection], None] | None) -> None:
        self.log.fence = fence

    # -- notifiers ---------------------------------------------------------------------------

    def notifier(self, handle: str) -> Notifier:
        """The notifier behind ``@handle``; :class:`ConfigError` when there is none."""
        with self._lock:
            existing = self._notifiers.get(handle)
            if existing is not None:
                return existing
            entry = self.config.notifiers.get(handle)
            if entry is None and handle not in BUILTIN_HANDLES:
                known = sorted(
                    set(self.config.notifiers) | set(BUILTIN_HANDLES) | set(self._notifiers)
                )
                raise ConfigError(f"@{handle} is not a notifier; known: {known}")
            context = NotifierContext(
                name=handle,
                public_url=self.config.public_url,
                database=self.database,
                graph_store=self.graph_store,
                timeout=self._timeout,
                clock=self._clock,
                enqueue_retrain=self._enqueue_retrain,
            )
            built = build_notifier(handle if entry is None else entry.type, entry, context)
            self._notifiers[handle] = built
            return built

    # -- building notifications (driftloop.notify.assembly) ---------------------------------

    def thresholds_for(self, event: Event) -> ThresholdLines:
        return self.assembler.thresholds_for(event)

    def series_for(self, event: Event) -> tuple[SeriesPoint, ...]:
        return self.assembler.series_for(event)

    def dashboard_url_for(self, event: Event) -> str:
        return self.assembler.dashboard_url_for(event)

    def timeline_for(self, event: Event) -> tuple[TimelineEntry, ...]:
        return self.assembler.timeline_for(event)

    def notification_for(self, event: Event, *, test: bool = False) -> Notification:
        return self.assembler.notification_for(event, test=test)

    # -- dispatching -------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        """The monitor-engine listener: queues when started, else delivers now."""
        if self.running:
            self.enqueue(event)
        else:
            self.dispatch(event)

    def dispatch(self, event: Event) -> list[DeliveryResult]:
        """Deliver an event to each of its handles now; one result per handle."""
        self.log.record_event(event)
        handles = event_handles(event) or ("log",)
        notification = self.notification_for(event)
        results: list[DeliveryResult] = []
        interrupted = False
        for handle in handles:
            result, stopped = self._deliver(handle, notification)
            results.append(result)
            interrupted = interrupted or stopped
        if not interrupted:
            self.log.mark_routed(event.event_id)
        return results

    def send_test(self, name: str) -> DeliveryResult:
        """Send a test notification (a made-up ALERT with a graph) through one notifier."""
        self.notifier(name)
        notification = self.assembler.test_notification(name, self._clock())
        self.log.record_event(notification.event)
        result, _ = self._deliver(name, notification)
        self.log.mark_routed(notification.event_id)
        return result

    def _deliver(self, handle: str, notification: Notification) -> tuple[DeliveryResult, bool]:
        """Deliver ``notification`` through ``handle`` once per event (claimed in the delivery
        log), retrying as configured; also returns whether a stop interrupted the retries."""
        event_id = notification.event_id
        started = time.perf_counter()
        try:
            notifier = self.notifier(handle)
        except ConfigError as exc:
            logger.error("cannot deliver event %s to @%s: %s", event_id, handle, exc.message)
            result = DeliveryResult.failed(exc.message, retryable=False)
            self.log.log_attempt(event_id, handle, 1, result, 0.0)
            return replace(result, notifier=handle, attempts=1), False
        if not self.log.claim(event_id, handle):
            return DeliveryResult(
                "duplicate",
                notifier=handle,
                detail="already delivered (or being delivered) for this event",
            ), False
        result, attempt, interrupted = self._send_with_retries(handle, notifier, notification)
        self.log.finish_claim(event_id, handle, result, attempt, interrupted=interrupted)
        total_ms = (time.perf_counter() - started) * 1000
        _log_delivery(event_id, handle, result, attempt, total_ms)
        return replace(result, notifier=handle, attempts=attempt, duration_ms=total_ms), interrupted

    def _send_with_retries(
        self, handle: str, notifier: Notifier, notification: Notification
    ) -> tuple[DeliveryResult, int, bool]:
        """Send until delivered, not retryable or out of attempts, logging each attempt; the
        last result, the attempts made, and whether a stop cut the retries short."""
        event_id = notification.event_id
        attempt = 0
        interrupted = False
        while True:
            attempt += 1
            begun = time.perf_counter()
            result = self._send_once(notifier, notification)
            duration_ms = (time.perf_counter() - begun) * 1000
            delay = self._retry_delay(result, attempt)
            if delay is not None and self._stopping.is_set():
                delay, interrupted = None, True
            self.log.log_attempt(
                event_id, handle, attempt, result, duration_ms, retrying=delay is not None
            )
            if delay is None:
                break
            try:
                self._wait(delay)
            except _InterruptedError:
                interrupted = True
                break
        if interrupted:
            result = replace(
                result,
                error=f"{result.error} (stopped before retrying; retried "
                "when the router starts again)",
            )
        return result, attempt, interrupted

    def _retry_delay(self, result: DeliveryResult, attempt: int) -> float | None:
        """How long to wait before the next attempt, or None when there is none: a retryable
        failure with attempts left waits the backoff, or the notifier's ``retry_after`` when
        that is within ``max_retry_after``."""
        if result.status != "failed" or not result.retryable:
            return None
        if attempt >= self.retry.max_attempts:
            return None
        if result.retry_after is None:
            return self.retry.backoff(attempt, self._rng)
        if result.retry_after <= self.retry.max_retry_after:
            return result.retry_after
        return None

    def _send_once(self, notifier: Notifier, notification: Notification) -> DeliveryResult:
        try:
            return notifier.send(notification)
        except DriftloopError as exc:
            return DeliveryResult.failed(
                exc.message, retryable=isinstance(exc, BackendUnavailableError)
            )
        except Exception as exc:  # a notifier bug must not take the router down
            logger.exception("notifier @%s raised", notifier.name)
            return DeliveryResult.failed(f"{type(exc).__name__}: {exc}")

    def _wait(self, delay: float) -> None:
        if self._sleep is not None:
            self._sleep(delay)
            if self._stopping.is_set():
                raise _InterruptedError
            return
        if self._stopping.wait(delay):
            raise _InterruptedError

    # -- the store (driftloop.notify.delivery_log) ------------------------------------------

    def record_events(self, connection: Connection, events: Sequence[Event]) -> None:
        """Record events to send in the caller's transaction (the monitor engine's, so that a
        stored transition is never without its notification); those recorded before are left."""
        self.log.record_events(connection, events)

    def deliveries(
        self, *, event_id: str | None = None, notifier: str | None = None, limit: int = 100
    ) -> list[DeliveryAttempt]:
        """The delivery log, newest first."""
        return self.log.deliveries(event_id=event_id, notifier=notifier, limit=limit)

    # -- background mode ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def enqueue(self, event: Event, *, timeout: float = 5.0) -> None:
        """Persist and queue an event for the background worker (delivered after start())."""
        self.log.record_event(event)
        try:
            self._queue.put(event, timeout=timeout)
        except queue.Full:
            raise BackendUnavailableError(
                f"the notification queue is full ({self._queue.maxsize} events); event "
                f"{event.event_id} is kept in the store and sent when the router restarts"
            ) from None

    def start(self) -> None:
        """Start the background worker; first replays events queued but never dispatched."""
        with self._lock:
            if self.running:
                return
            self._stopping.clear()
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            for event in self.log.unrouted_events():
                self._queue.put(event)
            self._thread = threading.Thread(target=self._run, name="driftloop-notify", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Send what is queued (one attempt each, no more waiting) and stop the worker."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        self._queue.put(_STOP)
        thread.join(timeout)
        self._thread = None

    def join(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty and the worker idle; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return self._queue.unfinished_tasks == 0

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                if isinstance(item, Event):
                    self.dispatch(item)
            except Exception:
                logger.exception("the notification worker failed on an event")
            finally:
                self._queue.task_done()

    def close(self) -> None:
        self.stop()
        for notifier in self._notifiers.values():
            notifier.close()


def _log_delivery(
    event_id: str, handle: str, result: DeliveryResult, attempts: int, total_ms: float
) -> None:
    if result.status == "failed":
        logger.warning(
            "delivery of event %s to @%s failed after %d attempt(s): %s",
            event_id,
            handle,
            attempts,
            result.error,
        )
    else:
        logger.info(
            "delivery of event %s to @%s: %s after %d attempt(s) in %.0f ms",
            event_id,
            handle,
            result.status,
            attempts,
            total_ms,
        )
