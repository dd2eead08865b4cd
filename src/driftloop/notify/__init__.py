"""Notifications: monitor events routed by ``@handle`` to Slack, Jira, webhooks, GitHub
workflow dispatch, the log and the retrain pipeline, with retries, a delivery log and
deduplication; and inbound alerts from Datadog or Alertmanager."""

from __future__ import annotations

from typing import TYPE_CHECKING

from driftloop._lazy import lazy_exports

if TYPE_CHECKING:
    from driftloop.notify.base import (
        DeliveryResult,
        Notification,
        Notifier,
        ThresholdLines,
        TimelineEntry,
    )
    from driftloop.notify.github import GithubDispatchNotifier
    from driftloop.notify.graph_routes import graph_router
    from driftloop.notify.graphs import GraphStore, render_graph
    from driftloop.notify.inbound import (
        InboundAlert,
        InboundRetrainHandler,
        inbound_router,
        parse_alert_payload,
    )
    from driftloop.notify.jira import JiraNotifier
    from driftloop.notify.log import LogNotifier
    from driftloop.notify.retrain import EnqueueRetrain, RetrainNotifier
    from driftloop.notify.router import DeliveryAttempt, NotificationRouter, RetryPolicy
    from driftloop.notify.slack import SlackNotifier
    from driftloop.notify.webhook import WebhookNotifier

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DeliveryAttempt": "driftloop.notify.router",
        "DeliveryResult": "driftloop.notify.base",
        "EnqueueRetrain": "driftloop.notify.retrain",
        "GithubDispatchNotifier": "driftloop.notify.github",
        "GraphStore": "driftloop.notify.graphs",
        "InboundAlert": "driftloop.notify.inbound",
        "InboundRetrainHandler": "driftloop.notify.inbound",
        "JiraNotifier": "driftloop.notify.jira",
        "LogNotifier": "driftloop.notify.log",
        "Notification": "driftloop.notify.base",
        "NotificationRouter": "driftloop.notify.router",
        "Notifier": "driftloop.notify.base",
        "RetrainNotifier": "driftloop.notify.retrain",
        "RetryPolicy": "driftloop.notify.router",
        "SlackNotifier": "driftloop.notify.slack",
        "ThresholdLines": "driftloop.notify.base",
        "TimelineEntry": "driftloop.notify.base",
        "WebhookNotifier": "driftloop.notify.webhook",
        "graph_router": "driftloop.notify.graph_routes",
        "inbound_router": "driftloop.notify.inbound",
        "parse_alert_payload": "driftloop.notify.inbound",
        "render_graph": "driftloop.notify.graphs",
    },
)

__all__ = [
    "DeliveryAttempt",
    "DeliveryResult",
    "EnqueueRetrain",
    "GithubDispatchNotifier",
    "GraphStore",
    "InboundAlert",
    "InboundRetrainHandler",
    "JiraNotifier",
    "LogNotifier",
    "Notification",
    "NotificationRouter",
    "Notifier",
    "RetrainNotifier",
    "RetryPolicy",
    "SlackNotifier",
    "ThresholdLines",
    "TimelineEntry",
    "WebhookNotifier",
    "graph_router",
    "inbound_router",
    "parse_alert_payload",
    "render_graph",
]
