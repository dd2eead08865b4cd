"""Notifications: monitor events routed by ``@handle`` to Slack, Jira, webhooks, GitHub
workflow dispatch, the log and the retrain pipeline, with retries, a delivery log and
deduplication; and inbound alerts from Datadog or Alertmanager."""

from driftloop.notify.base import (
    DeliveryResult,
    Notification,
    Notifier,
    ThresholdLines,
    TimelineEntry,
)
from driftloop.notify.github import GithubDispatchNotifier
from driftloop.notify.graphs import GraphStore, graph_router, render_graph
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
