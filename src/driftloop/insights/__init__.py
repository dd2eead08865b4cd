"""Insights: the non-blocking SDK that reports what a model sees, and the transports behind it.

``report_insights({"model_confidence": 0.93}, tags={"model": "reviews"})`` from any predict
code; the serving app reports confidence, class, text length and latency for every prediction.
"""

from driftloop.insights.client import (
    InsightsClient,
    InsightsStats,
    configure_insights,
    default_insights_client,
    get_insights_client,
    report_insights,
    shutdown_insights,
)
from driftloop.insights.local import LocalTransport, PointListener, create_local_transport
from driftloop.insights.outbox import Outbox, OutboxBatch
from driftloop.insights.transports import TRANSPORTS, Transport, open_transport

__all__ = [
    "TRANSPORTS",
    "InsightsClient",
    "InsightsStats",
    "LocalTransport",
    "Outbox",
    "OutboxBatch",
    "PointListener",
    "Transport",
    "configure_insights",
    "create_local_transport",
    "default_insights_client",
    "get_insights_client",
    "open_transport",
    "report_insights",
    "shutdown_insights",
]
