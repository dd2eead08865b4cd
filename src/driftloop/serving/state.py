"""What the serving endpoints share: the :class:`ServingState` that
:func:`~driftloop.serving.app.create_app` builds and keeps on ``app.state``, how a route finds it
(:func:`serving_state`) and how a route reports an insight through it (:func:`report_insight`,
which never fails an answer)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from fastapi import Request

from driftloop.config import Config
from driftloop.errors import ConflictError
from driftloop.insights.client import InsightsClient
from driftloop.metrics.points import SERVED_TAG, SHADOW_TAG
from driftloop.serving.feedback import FeedbackStore
from driftloop.serving.keys import ApiKeyStore
from driftloop.serving.prediction_log import PredictionLog
from driftloop.serving.prometheus import ServingMetrics
from driftloop.serving.slots import ModelSlotManager

logger = logging.getLogger(__name__)


@dataclass
class ServingState:
    """Everything the endpoints use, built by :func:`~driftloop.serving.app.create_app` and kept
    on ``app.state``."""

    config: Config
    manager: ModelSlotManager
    api_keys: ApiKeyStore
    feedback: FeedbackStore
    predictions: PredictionLog
    """Every answered prediction, in the store: what feedback labels are matched with."""
    metrics: ServingMetrics
    insights: InsightsClient | None = None
    owns_insights: bool = False
    shadow_tasks: set[asyncio.Task[None]] = field(default_factory=set)
    """Background shadow scorings still running (cancelled at shutdown)."""


def serving_state(request: Request) -> ServingState:
    """The state of the app that received ``request``."""
    state: ServingState = request.app.state.serving
    return state


def report_insight(
    state: ServingState,
    values: dict[str, float],
    tags: dict[str, str],
    timestamp: float | None = None,
) -> None:
    """Report ``values`` tagged ``tags`` to the app's insights client, if it has one; a client
    closed during shutdown is skipped (the answer still goes out)."""
    insights = state.insights
    if insights is None:
        return
    try:
        insights.report(values, tags, timestamp=timestamp)
    except ConflictError:  # the client closed during shutdown: the answer still goes out
        logger.debug("insights client closed; not reporting %s", sorted(values))


def pair_tags(name: str, shadow_version: int | None, served_version: int | None) -> dict[str, str]:
    """The tags of a shadow pair metric: the shadow's version, and the version it was paired
    with."""
    return {
        "model": name,
        "version": str(shadow_version),
        SHADOW_TAG: "true",
        SERVED_TAG: str(served_version),
    }
