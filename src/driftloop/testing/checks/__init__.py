"""Conformance suites: the checklist every implementation of a plug-in family must pass.

One suite per family, each a ``check_<family>(subject)`` function and the list of its checks
(``<FAMILY>_CHECKS``, to run one test per check). The subject describes the implementation
under test: a factory for it, plus the far side it talks to where the family has one. See
docs/plugins.md (Testing one) for how a plug-in package runs them.

Each name is imported on first use, so a suite pulls in only its own family's modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from driftloop._lazy import lazy_exports
from driftloop.testing.checks.base import Check, ConformanceError

if TYPE_CHECKING:
    from driftloop.testing.checks.detectors import DETECTOR_CHECKS, DetectorSubject, check_detector
    from driftloop.testing.checks.metric_stores import (
        METRIC_STORE_CHECKS,
        MetricStoreSubject,
        check_metric_store,
    )
    from driftloop.testing.checks.notifiers import (
        NOTIFIER_CHECKS,
        NotifierSubject,
        check_notifier,
        sample_notification,
    )
    from driftloop.testing.checks.object_storage import (
        OBJECT_STORAGE_CHECKS,
        ObjectStorageSubject,
        check_object_storage,
    )
    from driftloop.testing.checks.predictors import (
        PREDICTOR_CHECKS,
        PredictorSubject,
        check_predictor,
    )
    from driftloop.testing.checks.trainers import TRAINER_CHECKS, TrainerSubject, check_trainer
    from driftloop.testing.checks.transports import (
        TRANSPORT_CHECKS,
        TransportSubject,
        check_transport,
    )

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DETECTOR_CHECKS": "driftloop.testing.checks.detectors",
        "DetectorSubject": "driftloop.testing.checks.detectors",
        "check_detector": "driftloop.testing.checks.detectors",
        "METRIC_STORE_CHECKS": "driftloop.testing.checks.metric_stores",
        "MetricStoreSubject": "driftloop.testing.checks.metric_stores",
        "check_metric_store": "driftloop.testing.checks.metric_stores",
        "NOTIFIER_CHECKS": "driftloop.testing.checks.notifiers",
        "NotifierSubject": "driftloop.testing.checks.notifiers",
        "check_notifier": "driftloop.testing.checks.notifiers",
        "sample_notification": "driftloop.testing.checks.notifiers",
        "OBJECT_STORAGE_CHECKS": "driftloop.testing.checks.object_storage",
        "ObjectStorageSubject": "driftloop.testing.checks.object_storage",
        "check_object_storage": "driftloop.testing.checks.object_storage",
        "PREDICTOR_CHECKS": "driftloop.testing.checks.predictors",
        "PredictorSubject": "driftloop.testing.checks.predictors",
        "check_predictor": "driftloop.testing.checks.predictors",
        "TRAINER_CHECKS": "driftloop.testing.checks.trainers",
        "TrainerSubject": "driftloop.testing.checks.trainers",
        "check_trainer": "driftloop.testing.checks.trainers",
        "TRANSPORT_CHECKS": "driftloop.testing.checks.transports",
        "TransportSubject": "driftloop.testing.checks.transports",
        "check_transport": "driftloop.testing.checks.transports",
    },
)

__all__ = [
    "DETECTOR_CHECKS",
    "METRIC_STORE_CHECKS",
    "NOTIFIER_CHECKS",
    "OBJECT_STORAGE_CHECKS",
    "PREDICTOR_CHECKS",
    "TRAINER_CHECKS",
    "TRANSPORT_CHECKS",
    "Check",
    "ConformanceError",
    "DetectorSubject",
    "MetricStoreSubject",
    "NotifierSubject",
    "ObjectStorageSubject",
    "PredictorSubject",
    "TrainerSubject",
    "TransportSubject",
    "check_detector",
    "check_metric_store",
    "check_notifier",
    "check_object_storage",
    "check_predictor",
    "check_trainer",
    "check_transport",
    "sample_notification",
]
