"""Predict requests answered with an error, reported as insights: what the dashboard's
error-rate panel reads (beside ``latency_ms``, reported once per answered request).

:class:`PredictErrorReporter` watches every answer (the Prometheus middleware, the outermost,
hands it the request's path and the status, so a body refused before routing counts too) and
reports ``predict_error=1`` tagged with the model and ``status_class`` (``4xx`` or ``5xx``) for
each predict request of a served model (``/v1/models/{name}/predict`` or
``/v2/models/{name}/infer``) answered with an error. Refused keys (401, 403) are left
out (not a request the model was asked to serve), and so are unknown model names (a client must
not create series by naming them).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from driftloop.errors import ConflictError
from driftloop.insights.client import InsightsClient

PREDICT_PATH = re.compile(r"/v1/models/(?P<name>[^/]+)/predict|/v2/models/(?P<v2>[^/]+)/infer")
"""A predict request: /v1's, or the Open Inference Protocol's inference."""
PREDICT_ERROR_METRIC = "predict_error"
STATUS_CLASS_TAG = "status_class"
_REFUSED_KEYS = frozenset({401, 403})

logger = logging.getLogger(__name__)


class PredictErrorReporter:
    """An answer observer: ``reporter(path, status)``."""

    def __init__(
        self, insights: Callable[[], InsightsClient | None], served: Callable[[str], bool]
    ) -> None:
        self.insights = insights
        self.served = served

    def __call__(self, path: str, status: int) -> None:
        if status < 400 or status in _REFUSED_KEYS:
            return
        found = PREDICT_PATH.fullmatch(path)
        client = self.insights()
        if found is None or client is None or not self.served(name := found["name"] or found["v2"]):
            return
        try:
            client.report(
                {PREDICT_ERROR_METRIC: 1.0},
                {"model": name, STATUS_CLASS_TAG: f"{status // 100}xx"},
                timestamp=time.time(),
            )
        except ConflictError:  # the client closed during shutdown
            logger.debug("insights client closed; not reporting a predict error")
