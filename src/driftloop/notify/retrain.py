"""The ``retrain`` notifier (built in): hands the incident to the retrain pipeline through an
injected ``enqueue_retrain(model, incident_id, reason) -> job_id``."""

from __future__ import annotations

from typing import Protocol

from driftloop.errors import ConfigError, DriftloopError
from driftloop.monitors.events import MonitorState
from driftloop.notify.base import DeliveryResult, Notification, Notifier


class EnqueueRetrain(Protocol):
    def __call__(self, model: str, incident_id: str | None, reason: str) -> str: ...


def retrain_reason(notification: Notification) -> str:
    event = notification.event
    crossed = "" if event.threshold is None else f" (threshold {event.threshold:g})"
    return (
        f"monitor {event.monitor!r} went {event.previous} → {event.state}: "
        f"value {notification.value_text}{crossed}"
    )


class RetrainNotifier(Notifier):
    def __init__(
        self,
        enqueue_retrain: EnqueueRetrain | None,
        *,
        name: str = "retrain",
        model: str | None = None,
    ) -> None:
        if enqueue_retrain is None:
            raise ConfigError(
                f"@{name} is routed but no retrain pipeline was given to the notification "
                "router (enqueue_retrain=...); run it inside 'driftloop up' or inject one"
            )
        self.name = name
        self.model = model
        self._enqueue = enqueue_retrain

    def send(self, notification: Notification) -> DeliveryResult:
        if notification.state == MonitorState.OK:
            return DeliveryResult("skipped", detail="the monitor is OK: nothing to retrain")
        model = self.model or notification.model
        if not model:
            return DeliveryResult.failed(
                f"@{self.name}: monitor {notification.monitor!r} is not grouped by model and "
                "the notifier names none; set notifiers.<name>.model or group_by: [model]"
            )
        try:
            job_id = self._enqueue(model, notification.incident_id, retrain_reason(notification))
        except DriftloopError as exc:
            retryable = exc.status_code >= 500
            return DeliveryResult.failed(
                f"enqueueing the retrain failed: {exc.message}", retryable=retryable
            )
        return DeliveryResult.delivered(detail=f"retrain job {job_id} for {model}")
