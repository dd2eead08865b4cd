"""Assembling a :class:`~driftloop.notify.base.Notification` from a monitor event: the
monitor's thresholds (relative ones resolved against the event's reference), the recent series
for the graph, the dashboard link and the incident's timeline; and the made-up one that
``driftloop notify test`` sends."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from urllib.parse import urlencode

from driftloop.config import Config, MonitorConfig
from driftloop.metrics.points import MetricStore, SeriesPoint
from driftloop.monitors.events import Event, MonitorState
from driftloop.monitors.series import series_filter
from driftloop.monitors.timeline import TimelineEntry
from driftloop.notify.base import Notification, ThresholdLines
from driftloop.notify.delivery_log import DeliveryLog

logger = logging.getLogger(__name__)

SeriesSource = Callable[[Event], Sequence[SeriesPoint]]


class NotificationAssembler:
    """Builds notifications; ``series_source`` (else the metric store) supplies the graph's
    points and ``dashboard_url`` the link (else the config's ``public_url``)."""

    def __init__(
        self,
        config: Config,
        log: DeliveryLog,
        *,
        series_source: SeriesSource | None = None,
        metric_store: MetricStore | None = None,
        dashboard_url: Callable[[Event], str] | None = None,
    ) -> None:
        self.config = config
        self._log = log
        self._series_source = series_source
        self._metric_store = metric_store
        self._dashboard_url = dashboard_url
        self._monitors: dict[str, MonitorConfig] = {m.name: m for m in config.monitors}

    def thresholds_for(self, event: Event) -> ThresholdLines:
        monitor = self._monitors.get(event.monitor)
        if monitor is None:
            return ThresholdLines()
        thresholds = monitor.below or monitor.above
        if thresholds is None:
            return ThresholdLines()
        raw_reference = event.details.get("reference")
        reference = (
            float(raw_reference)
            if isinstance(raw_reference, int | float) and not isinstance(raw_reference, bool)
            else None
        )
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
            return tuple(
                self._metric_store.series(
                    monitor.metric,
                    event.timestamp - span,
                    event.timestamp + step,
                    step,
                    filter={**series_filter(monitor), **event.group},
                )
            )
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
        return self._log.transitions(event.incident_id, event.timestamp)

    def notification_for(self, event: Event, *, test: bool = False) -> Notification:
        return Notification.from_event(
            event,
            dashboard_url=self.dashboard_url_for(event),
            thresholds=self.thresholds_for(event),
            series=self.series_for(event),
            timeline=self.timeline_for(event),
            test=test,
        )

    def test_notification(self, name: str, now: float) -> Notification:
        """A made-up ALERT with a graph, through the notifier ``name``."""
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
            SeriesPoint(
                timestamp=now - (29 - i) * 60,
                avg=0.9 - 0.01 * i,
                min=0.85 - 0.012 * i,
                max=0.95 - 0.008 * i,
                count=100,
            )
            for i in range(30)
        )
        return Notification.from_event(
            event,
            dashboard_url=self.dashboard_url_for(event),
            thresholds=ThresholdLines(warning=0.8, critical=0.7, direction="below"),
            series=series,
            test=True,
        )
