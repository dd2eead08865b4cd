"""Serving: versioned models behind an authenticated JSON API, with micro-batching, hot swap,
insights for every prediction and Prometheus metrics. ``create_app(config)`` builds the app."""

from driftloop.serving.app import (
    HASH_HEADER,
    SERVER_TIMING_HEADER,
    VERSION_HEADER,
    ServingState,
    app_from_environment,
    create_app,
    require_scope,
)
from driftloop.serving.batching import MicroBatcher
from driftloop.serving.feedback import (
    FeedbackRecord,
    FeedbackStore,
    PredictionLog,
    RecordedPrediction,
)
from driftloop.serving.keys import ApiKeyInfo, ApiKeyStore, CreatedApiKey, Scope
from driftloop.serving.prometheus import ServingMetrics
from driftloop.serving.server import ServerPlan, plan_server, run_server
from driftloop.serving.slots import ModelSlot, ModelSlotManager, ServedModel, ServedModelStatus
from driftloop.serving.sources import (
    InMemoryModelSource,
    InMemoryModelVersion,
    ModelSource,
    ModelVersionLike,
    RegistryModelSource,
)

__all__ = [
    "HASH_HEADER",
    "SERVER_TIMING_HEADER",
    "VERSION_HEADER",
    "ApiKeyInfo",
    "ApiKeyStore",
    "CreatedApiKey",
    "FeedbackRecord",
    "FeedbackStore",
    "InMemoryModelSource",
    "InMemoryModelVersion",
    "MicroBatcher",
    "ModelSlot",
    "ModelSlotManager",
    "ModelSource",
    "ModelVersionLike",
    "PredictionLog",
    "RecordedPrediction",
    "RegistryModelSource",
    "Scope",
    "ServedModel",
    "ServedModelStatus",
    "ServerPlan",
    "ServingMetrics",
    "ServingState",
    "app_from_environment",
    "create_app",
    "plan_server",
    "require_scope",
    "run_server",
]
