"""Serving: versioned models behind an authenticated JSON API, with micro-batching, hot swap,
insights for every prediction and Prometheus metrics. ``create_app(config)`` builds the app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from driftloop._lazy import lazy_exports

if TYPE_CHECKING:
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
    from driftloop.serving.feedback import FeedbackRecord, FeedbackStore
    from driftloop.serving.keys import ApiKeyInfo, ApiKeyStore, CreatedApiKey, Scope
    from driftloop.serving.prediction_log import PredictionLog, RecordedPrediction
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

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ApiKeyInfo": "driftloop.serving.keys",
        "ApiKeyStore": "driftloop.serving.keys",
        "CreatedApiKey": "driftloop.serving.keys",
        "FeedbackRecord": "driftloop.serving.feedback",
        "FeedbackStore": "driftloop.serving.feedback",
        "HASH_HEADER": "driftloop.serving.app",
        "InMemoryModelSource": "driftloop.serving.sources",
        "InMemoryModelVersion": "driftloop.serving.sources",
        "MicroBatcher": "driftloop.serving.batching",
        "ModelSlot": "driftloop.serving.slots",
        "ModelSlotManager": "driftloop.serving.slots",
        "ModelSource": "driftloop.serving.sources",
        "ModelVersionLike": "driftloop.serving.sources",
        "PredictionLog": "driftloop.serving.prediction_log",
        "RecordedPrediction": "driftloop.serving.prediction_log",
        "RegistryModelSource": "driftloop.serving.sources",
        "SERVER_TIMING_HEADER": "driftloop.serving.app",
        "Scope": "driftloop.serving.keys",
        "ServedModel": "driftloop.serving.slots",
        "ServedModelStatus": "driftloop.serving.slots",
        "ServerPlan": "driftloop.serving.server",
        "ServingMetrics": "driftloop.serving.prometheus",
        "ServingState": "driftloop.serving.app",
        "VERSION_HEADER": "driftloop.serving.app",
        "app_from_environment": "driftloop.serving.app",
        "create_app": "driftloop.serving.app",
        "plan_server": "driftloop.serving.server",
        "require_scope": "driftloop.serving.app",
        "run_server": "driftloop.serving.server",
    },
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
