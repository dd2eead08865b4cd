"""driftloop: keep a deployed model from drifting.

serve → report insights → monitor → notify → retrain → gate → deploy → verify.

The errors are imported at once; the insights SDK, the config and the components on first use,
so ``from driftloop import report_insights`` imports the SDK alone inside a model's predict code
and a ``driftloop`` command that reports no insight (every one but ``serve`` and ``up``) does
not pay for it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from driftloop._version import __version__
from driftloop.errors import (
    AuthError,
    BackendUnavailableError,
    ConfigError,
    ConflictError,
    DriftloopError,
    ForbiddenError,
    IntegrityError,
    InvalidInputError,
    InvalidTextError,
    JobCancelledError,
    LimitError,
    MissingExtraError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    RateLimitedError,
    TrainingError,
    UnknownBackendError,
)

if TYPE_CHECKING:
    from driftloop.client import AsyncClient, Client
    from driftloop.config import Config, MonitorConfig, load_config, parse_config
    from driftloop.insights import configure_insights, report_insights
    from driftloop.metrics.points import MetricPoint, PointBatch
    from driftloop.metrics.sql import SqlMetricStore
    from driftloop.monitors.engine import MonitorEngine
    from driftloop.monitors.events import Event, MonitorState
    from driftloop.notify.router import NotificationRouter
    from driftloop.objectstore import DatasetStore
    from driftloop.pipeline.queue import JobQueue
    from driftloop.pipeline.runner import RetrainPipeline
    from driftloop.predictors import Feature, InputSchema, Predictor, TextClassifier
    from driftloop.registry import ModelRegistry, ModelVersion
    from driftloop.serving.app import create_app
    from driftloop.system import DriftloopSystem

_LAZY = {
    "AsyncClient": "driftloop.client",
    "Client": "driftloop.client",
    "Config": "driftloop.config",
    "MonitorConfig": "driftloop.config",
    "load_config": "driftloop.config",
    "parse_config": "driftloop.config",
    "DatasetStore": "driftloop.objectstore",
    "DriftloopSystem": "driftloop.system",
    "Event": "driftloop.monitors.events",
    "Feature": "driftloop.predictors",
    "InputSchema": "driftloop.predictors",
    "Predictor": "driftloop.predictors",
    "TextClassifier": "driftloop.predictors",
    "JobQueue": "driftloop.pipeline.queue",
    "MetricPoint": "driftloop.metrics.points",
    "ModelRegistry": "driftloop.registry",
    "ModelVersion": "driftloop.registry",
    "MonitorEngine": "driftloop.monitors.engine",
    "MonitorState": "driftloop.monitors.events",
    "NotificationRouter": "driftloop.notify.router",
    "PointBatch": "driftloop.metrics.points",
    "RetrainPipeline": "driftloop.pipeline.runner",
    "SqlMetricStore": "driftloop.metrics.sql",
    "configure_insights": "driftloop.insights",
    "create_app": "driftloop.serving.app",
    "report_insights": "driftloop.insights",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'driftloop' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncClient",
    "AuthError",
    "BackendUnavailableError",
    "Client",
    "Config",
    "ConfigError",
    "ConflictError",
    "DatasetStore",
    "DriftloopError",
    "DriftloopSystem",
    "Event",
    "Feature",
    "ForbiddenError",
    "InputSchema",
    "IntegrityError",
    "InvalidInputError",
    "InvalidTextError",
    "JobCancelledError",
    "JobQueue",
    "LimitError",
    "MetricPoint",
    "MissingExtraError",
    "ModelRegistry",
    "ModelVersion",
    "MonitorConfig",
    "MonitorEngine",
    "MonitorState",
    "NotFoundError",
    "NotificationRouter",
    "OverloadedError",
    "PayloadTooLargeError",
    "PointBatch",
    "Predictor",
    "RateLimitedError",
    "RetrainPipeline",
    "SqlMetricStore",
    "TextClassifier",
    "TrainingError",
    "UnknownBackendError",
    "__version__",
    "configure_insights",
    "create_app",
    "load_config",
    "parse_config",
    "report_insights",
]
