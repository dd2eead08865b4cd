"""The notification router: monitor events in, deliveries out.

Each event goes to every ``@handle`` it mentions (``log`` when it mentions none). Per handle the
router claims the idempotency key (event id, notifier) in the store, so an event reaches a
notifier once even across restarts and replicas; sends with retries (exponential backoff with
jitter on 5xx, 429 and network failures, honouring ``Retry-After``); and logs every attempt in
``notify_deliveries``.

Use it synchronously (``router.dispatch(event)``) or in the background (``router.start()``, then
``router(event)`` only queues; queued events are in the store and replayed after a restart).
"""

from __future__ import annotations

import json
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from driftloop.config import (
    Config,
    GithubDispatchNotifierConfig,
    MonitorConfig,
    RetrainNotifierConfig,
    WebhookNotifierConfig,
)
from driftloop.errors import BackendUnavailableError, ConfigError, DriftloopError
from driftloop.messages import mentioned_handles
from driftloop.metrics.points import MetricStore, SeriesPoint
from driftloop.monitors.events import Event, MonitorState
from driftloop.monitors.series import series_filter
from driftloop.notify.base import (
    DeliveryResult,
    Notification,
    Notifier,
    ThresholdLines,
    TimelineEntry,
    clean_message,
    event_handles,
)
from driftloop.notify.graphs import GraphStore
from driftloop.notify.plugins import NotifierContext, build_notifier
from driftloop.notify.retrain import EnqueueRetrain
from driftloop.notify.tables import notify_deliveries, notify_events, notify_sent
from driftloop.notify.variables import unknown_names
from driftloop.store.database import Database

logger = logging.getLogger(__name__)

BUILTIN_HANDLES = ("log", "retrain")
SeriesSource = Callable[[Event], Sequence[SeriesPoint]]


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


@dataclass(frozen=True)
class DeliveryAttempt:
    """One row of the delivery log."""

    event_id: str
    notifier: str
    attempt: int
    status: str
    http_status: int | None
    error: str | None
    detail: str | None
    duration_ms: float
    retry_after: float | None
    created_at: float


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
        self._series_source = series_source
        self._metric_store = metric_store
        self._dashboard_url = dashboard_url
        self.retry = retry or RetryPolicy()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._timeout = timeout
        self._claim_timeout = claim_timeout
        self._enqueue_retrain = enqueue_retrain
        self._monitors: dict[str, MonitorConfig] = {m.name: m for m in config.monitors}
        self._notifiers: dict[str, Notifier] = dict(notifiers or {})
        for name, notifier in self._notifiers.items():
            notifier.name = notifier.name or name
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self.fence: Callable[[Connection], None] | None = None
        """Called first in every write (claims, the delivery log, routed events): the control
        plane's fence, which refuses them once this process no longer leads."""
        self._check_templates()
        for name, entry in config.notifiers.items():
            if not isinstance(entry, RetrainNotifierConfig):
                self.notifier(name)  # fail early on a notifier that cannot be built
        if require_routes:
            self._check_retrain_routes()

    # -- notifiers ---------------------------------------------------------------------------

    def notifier(self, handle: str) -> Notifier:
        """The notifier behind ``@handle``; :class:`ConfigError` when there is none."""
        with self._lock:
            existing = self._notifiers.get(handle)
            if existing is not None:
                return existing
            entry = self.config.notifiers.get(handle)
            if entry is None and handle not in BUILTIN_HANDLES:
                known = sorted(set(self.config.notifiers) | set(BUILTIN_HANDLES)
                               | set(self._notifiers))
                raise ConfigError(f"@{handle} is not a notifier; known: {known}")
            context = NotifierContext(
                name=handle, public_url=self.config.public_url, database=self.database,
                graph_store=self.graph_store, timeout=self._timeout, clock=self._clock,
                enqueue_retrain=self._enqueue_retrain)
            built = build_notifier(handle if entry is None else entry.type, entry, context)
            self._notifiers[handle] = built
            return built

    def _check_templates(self) -> None:
        tags = {"model"}
        for monitor in self.config.monitors:
            tags |= set(monitor.group_by) | set(monitor.filter)
        for name, entry in self.config.notifiers.items():
            templates: list[tuple[str, object]] = []
            if isinstance(entry, WebhookNotifierConfig):
                templates = [("payload", entry.payload), ("headers", entry.headers)]
            elif isinstance(entry, GithubDispatchNotifierConfig):
                templates = [("inputs", entry.inputs)]
            for key, template in templates:
                unknown = unknown_names(template, tags)
                if unknown:
                    raise ConfigError(
                        f"notifiers.{name}.{key} uses unknown variables "
                        f"{['{{' + u + '}}' for u in unknown]}; see docs/notifications.md"
                    )

    def _retrain_handles(self) -> set[str]:
        handles = {"retrain"} if "retrain" not in self.config.notifiers else set()
        handles |= {n for n, e in self.config.notifiers.items()
                    if isinstance(e, RetrainNotifierConfig)}
        return handles

    def _check_retrain_routes(self) -> None:
        if self._enqueue_retrain is not None:
            return
        retrain = self._retrain_handles() - set(self._notifiers)
        for monitor in self.config.monitors:
            routed = retrain & set(mentioned_handles(monitor.message))
            if routed:
                raise ConfigError(
                    f"monitor {monitor.name!r} routes to @{sorted(routed)[0]}, but the "
                    "notification router was given no retrain pipeline (enqueue_retrain)"
                )

    # -- building notifications --------------------------------------------------------------

    def thresholds_for(self, event: Event) -> ThresholdLines:
        monitor = self._monitors.get(event.monitor)
        if monitor is None:
            return ThresholdLines()
        thresholds = monitor.below or monitor.above
        if thresholds is None:
            return ThresholdLines()
        raw_reference = event.details.get("reference")
        reference = (float(raw_reference) if isinstance(raw_reference, int | float)
                     and not isinstance(raw_reference, bool) else None)
        return ThresholdLines(
            warning=thresholds.warning.resolve(reference) if thresholds.warning else None,
            critical=thresholds.critical.resolve(reference) if thresholds.critical else None,
            direction="below" if monitor.below is not None else "above",
        )

    def series_for(self, event: Event) -> tuple[SeriesPoint, ...]:
        try:
            if self._series_source is not None:
                return tuple(self._series_source(event))
            monitor = self._monitors.get(event.monitor)
            if self._metric_store is None or monitor is None:
                return ()
            span = max(12 * monitor.window, 600.0)
            step = span / 60
            return tuple(self._metric_store.series(
                monitor.metric, event.timestamp - span, event.timestamp + step, step,
                filter={**series_filter(monitor), **event.group},
            ))
        except Exception:  # a graph is a nicety: never let it stop a notification
            logger.warning("no graph series for event %s", event.event_id, exc_info=True)
            return ()

    def dashboard_url_for(self, event: Event) -> str:
        if self._dashboard_url is not None:
            return self._dashboard_url(event)
        query = {"monitor": event.monitor}
        if event.model:
            query["model"] = event.model
        return f"{self.config.public_url.rstrip('/')}/dashboard?{urlencode(query)}"

    def timeline_for(self, event: Event) -> tuple[TimelineEntry, ...]:
        if event.incident_id is None:
            return ()
        table = notify_events
        with self._database_engine.connect() as connection:
            rows = connection.execute(
                sa.select(table.c.timestamp, table.c.previous, table.c.state, table.c.value,
                          table.c.message)
                .where(table.c.incident_id == event.incident_id,
                       table.c.timestamp <= event.timestamp)
                .order_by(table.c.timestamp, table.c.received_at)
                .limit(200)
            ).all()
        return tuple(TimelineEntry.transition(r.timestamp, r.previous, r.state, r.value,
                                              clean_message(r.message)) for r in rows)

    def notification_for(self, event: Event, *, test: bool = False) -> Notification:
        return Notification.from_event(
            event,
            dashboard_url=self.dashboard_url_for(event),
            thresholds=self.thresholds_for(event),
            series=self.series_for(event),
            timeline=self.timeline_for(event),
            test=test,
        )

    # -- dispatching -------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        """The monitor-engine listener: queues when started, else delivers now."""
        if self.running:
            self.enqueue(event)
        else:
            self.dispatch(event)

    def dispatch(self, event: Event) -> list[DeliveryResult]:
        """Deliver an event to each of its handles now; one result per handle."""
        self._record_event(event)
        handles = event_handles(event) or ("log",)
        notification = self.notification_for(event)
        results: list[DeliveryResult] = []
        interrupted = False
        for handle in handles:
            result, stopped = self._deliver(handle, notification)
            results.append(result)
            interrupted = interrupted or stopped
        if not interrupted:
            self._mark_routed(event.event_id)
        return results

    def send_test(self, name: str) -> DeliveryResult:
        """Send a test notification (a made-up ALERT with a graph) through one notifier."""
        self.notifier(name)
        now = self._clock()
        token = uuid.uuid4().hex[:12]
        model = next(iter(sorted(self.config.models)), "test-model")
        event = Event(
            event_id=f"test-{token}",
            monitor="driftloop test",
            group={"model": model},
            previous=MonitorState.WARN,
            state=MonitorState.ALERT,
            value=0.62,
            threshold=0.7,
            timestamp=now,
            incident_id=f"test-{token}",
            message=f"This is a test notification from driftloop through the notifier "
                    f"{name!r}; nothing is wrong with your model.",
            handles=(name,),
        )
        series = tuple(
            SeriesPoint(timestamp=now - (29 - i) * 60, avg=0.9 - 0.01 * i, min=0.85 - 0.012 * i,
                        max=0.95 - 0.008 * i, count=100)
            for i in range(30)
        )
        notification = Notification.from_event(
            event,
            dashboard_url=self.dashboard_url_for(event),
            thresholds=ThresholdLines(warning=0.8, critical=0.7, direction="below"),
            series=series,
            test=True,
        )
        self._record_event(event)
        result, _ = self._deliver(name, notification)
        self._mark_routed(event.event_id)
        return result

    def _deliver(self, handle: str, notification: Notification) -> tuple[DeliveryResult, bool]:
        event_id = notification.event_id
        started = time.perf_counter()
        try:
            notifier = self.notifier(handle)
        except ConfigError as exc:
            logger.error("cannot deliver event %s to @%s: %s", event_id, handle, exc.message)
            result = DeliveryResult.failed(exc.message, retryable=False)
            self._log_attempt(event_id, handle, 1, result, 0.0)
            return replace(result, notifier=handle, attempts=1), False
        if not self._claim(event_id, handle):
            return DeliveryResult("duplicate", notifier=handle,
                                  detail="already delivered (or being delivered) "
                                         "for this event"), False
        attempt = 0
        result = DeliveryResult.failed("not attempted")
        interrupted = False
        while True:
            attempt += 1
            begun = time.perf_counter()
            result = self._send_once(notifier, notification)
            duration_ms = (time.perf_counter() - begun) * 1000
            delay: float | None = None
            if result.status == "failed" and result.retryable and attempt < self.retry.max_attempts:
                if result.retry_after is None:
                    delay = self.retry.backoff(attempt, self._rng)
                elif result.retry_after <= self.retry.max_retry_after:
                    delay = result.retry_after
            if delay is not None and self._stopping.is_set():
                delay, interrupted = None, True
            self._log_attempt(event_id, handle, attempt, result, duration_ms,
                              retrying=delay is not None)
            if delay is None:
                break
            try:
                self._wait(delay)
            except _InterruptedError:
                interrupted = True
                break
        if interrupted:
            result = replace(result, error=f"{result.error} (stopped before retrying; retried "
                                           "when the router starts again)")
        self._finish_claim(event_id, handle, result, attempt, interrupted=interrupted)
        total_ms = (time.perf_counter() - started) * 1000
        if result.status == "failed":
            logger.warning("delivery of event %s to @%s failed after %d attempt(s): %s",
                           event_id, handle, attempt, result.error)
        else:
            logger.info("delivery of event %s to @%s: %s after %d attempt(s) in %.0f ms",
                        event_id, handle, result.status, attempt, total_ms)
        return replace(result, notifier=handle, attempts=attempt, duration_ms=total_ms), \
            interrupted

    def _send_once(self, notifier: Notifier, notification: Notification) -> DeliveryResult:
        try:
            return notifier.send(notification)
        except DriftloopError as exc:
            return DeliveryResult.failed(exc.message, retryable=isinstance(
                exc, BackendUnavailableError))
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

    # -- the store ---------------------------------------------------------------------------

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        with self._database_engine.begin() as connection:
            if self.fence is not None:
                self.fence(connection)
            yield connection

    def record_events(self, connection: Connection, events: Sequence[Event]) -> None:
        """Record events to send in the caller's transaction (the monitor engine's, so that a
        stored transition is never without its notification); those recorded before are left."""
        if not events:
            return
        known = set(connection.execute(sa.select(notify_events.c.event_id).where(
            notify_events.c.event_id.in_([e.event_id for e in events]))).scalars())
        for event in events:
            if event.event_id not in known:
                connection.execute(notify_events.insert().values(**self._event_row(event)))

    def _record_event(self, event: Event) -> None:
        try:
            with self._begin() as connection:
                connection.execute(notify_events.insert().values(**self._event_row(event)))
        except SqlIntegrityError:
            pass  # seen before: the claims decide what still needs sending

    def _event_row(self, event: Event) -> dict[str, object]:
        return dict(
            event_id=event.event_id,
            incident_id=event.incident_id,
            monitor=event.monitor,
            group_json=json.dumps(dict(event.group), sort_keys=True),
            previous=str(event.previous),
            state=str(event.state),
            value=event.value,
            threshold=event.threshold,
            timestamp=event.timestamp,
            message=event.message,
            handles_json=json.dumps(list(event.handles)),
            renotification=event.renotification,
            details_json=json.dumps(dict(event.details), default=str),
            received_at=self._clock(),
            routed_at=None,
        )

    def _mark_routed(self, event_id: str) -> None:
        with self._begin() as connection:
            connection.execute(notify_events.update()
                               .where(notify_events.c.event_id == event_id)
                               .values(routed_at=self._clock()))

    def _claim(self, event_id: str, notifier: str) -> bool:
        """Take the (event, notifier) key; False when it was delivered or is being delivered."""
        now = self._clock()
        table = notify_sent
        try:
            with self._begin() as connection:
                connection.execute(table.insert().values(
                    event_id=event_id, notifier=notifier, status="pending", attempts=0,
                    claimed_at=now, finished_at=None))
            return True
        except SqlIntegrityError:
            pass
        with self._begin() as connection:
            row = connection.execute(
                sa.select(table.c.status, table.c.claimed_at)
                .where(table.c.event_id == event_id, table.c.notifier == notifier)
            ).first()
            if row is None or row.status in {"delivered", "skipped"}:
                return False
            if row.status == "pending" and now - row.claimed_at < self._claim_timeout:
                return False
            taken = connection.execute(
                table.update()
                .where(table.c.event_id == event_id, table.c.notifier == notifier,
                       table.c.status == row.status, table.c.claimed_at == row.claimed_at)
                .values(status="pending", claimed_at=now, finished_at=None)
            )
            return bool(taken.rowcount == 1)

    def _finish_claim(self, event_id: str, notifier: str, result: DeliveryResult,
                      attempts: int, *, interrupted: bool) -> None:
        status = "failed" if interrupted else result.status
        with self._begin() as connection:
            connection.execute(
                notify_sent.update()
                .where(notify_sent.c.event_id == event_id, notify_sent.c.notifier == notifier)
                .values(status=status, attempts=notify_sent.c.attempts + attempts,
                        detail=result.detail or result.error, finished_at=self._clock())
            )

    def _log_attempt(self, event_id: str, notifier: str, attempt: int, result: DeliveryResult,
                     duration_ms: float, *, retrying: bool = False) -> None:
        with self._begin() as connection:
            connection.execute(notify_deliveries.insert().values(
                event_id=event_id, notifier=notifier, attempt=attempt,
                status="retrying" if retrying else result.status,
                http_status=result.http_status, error=result.error, detail=result.detail,
                duration_ms=duration_ms, retry_after=result.retry_after,
                created_at=self._clock(),
            ))

    def deliveries(self, *, event_id: str | None = None, notifier: str | None = None,
                   limit: int = 100) -> list[DeliveryAttempt]:
        """The delivery log, newest first."""
        table = notify_deliveries
        query = sa.select(table).order_by(table.c.id.desc()).limit(limit)
        if event_id is not None:
            query = query.where(table.c.event_id == event_id)
        if notifier is not None:
            query = query.where(table.c.notifier == notifier)
        with self._database_engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [DeliveryAttempt(r["event_id"], r["notifier"], r["attempt"], r["status"],
                                r["http_status"], r["error"], r["detail"], r["duration_ms"],
                                r["retry_after"], r["created_at"]) for r in rows]

    def _unrouted_events(self) -> list[Event]:
        table = notify_events
        with self._database_engine.connect() as connection:
            rows = connection.execute(
                sa.select(table).where(table.c.routed_at.is_(None))
                .order_by(table.c.timestamp, table.c.received_at)
            ).mappings().all()
        return [_event_from_row(row) for row in rows]

    # -- background mode ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def enqueue(self, event: Event, *, timeout: float = 5.0) -> None:
        """Persist and queue an event for the background worker (delivered after start())."""
        self._record_event(event)
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
            for event in self._unrouted_events():
                self._queue.put(event)
            self._thread = threading.Thread(target=self._run, name="driftloop-notify",
                                            daemon=True)
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


def _event_from_row(row: sa.RowMapping) -> Event:
    return Event(
        event_id=row["event_id"],
        monitor=row["monitor"],
        group=json.loads(row["group_json"]),
        previous=MonitorState(row["previous"]),
        state=MonitorState(row["state"]),
        value=row["value"],
        threshold=row["threshold"],
        timestamp=row["timestamp"],
        incident_id=row["incident_id"],
        message=row["message"],
        handles=tuple(json.loads(row["handles_json"])),
        renotification=bool(row["renotification"]),
        details=json.loads(row["details_json"]),
    )
