"""The ``log`` notifier (built in): one structured JSON line per notification."""

from __future__ import annotations

import json
import logging

from driftloop.monitors.events import MonitorState
from driftloop.monitors.history import details_json
from driftloop.notify.base import DeliveryResult, Notification, Notifier, json_safe
from driftloop.timestamps import iso_utc

logger = logging.getLogger("driftloop.notify.log")
_LEVELS = {MonitorState.ALERT: logging.ERROR, MonitorState.WARN: logging.WARNING}


def log_record(notification: Notification) -> dict[str, object]:
    event = notification.event
    return {
        "kind": "monitor_notification",
        "event_id": event.event_id,
        "monitor": event.monitor,
        "model": event.model,
        "group": dict(event.group),
        "previous": str(event.previous),
        "state": str(event.state),
        "value": event.value,
        "threshold": event.threshold,
        "incident_id": event.incident_id,
        "timestamp": iso_utc(event.timestamp),
        "renotification": event.renotification,
        "test": notification.test,
        "message": notification.text,
        "dashboard_url": notification.dashboard_url,
        "details": json_safe(details_json(event.details)),
    }


class LogNotifier(Notifier):
    """Writes to the ``driftloop.notify.log`` logger: ERROR for ALERT, WARNING for WARN, INFO
    otherwise."""

    def __init__(self, *, name: str = "log") -> None:
        self.name = name

    def send(self, notification: Notification) -> DeliveryResult:
        level = _LEVELS.get(notification.state, logging.INFO)
        logger.log(level, json.dumps(log_record(notification), sort_keys=True, default=str))
        return DeliveryResult.delivered()
