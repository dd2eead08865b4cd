"""Drift detection: pure numerics (numpy/scipy only), one algorithm per module.

Every detector has the river-style interface of :class:`DriftDetector`: ``update(x)``, then
``drift_detected`` / ``warning_detected``; ``reset()``; ``n_seen``. :func:`build_detector` turns
a ``DetectorConfig`` and a model's ``ReferenceProfile`` into one.

The names are imported on first use (scipy and scikit-learn are heavy), so a command that
only reads monitor states starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from driftloop._lazy import lazy_exports

if TYPE_CHECKING:
    from driftloop.drift.accuracy import AccuracyEstimate
    from driftloop.drift.base import DriftDetector
    from driftloop.drift.calibration import SequentialCalibration, calibrate_sequential
    from driftloop.drift.cbpe import ConfidenceAccuracyEstimator, expected_accuracy
    from driftloop.drift.chi_square import ChiSquareWindowDetector
    from driftloop.drift.combined import CombinedDetector, mean_and_shape_detector
    from driftloop.drift.cusum import CusumDetector
    from driftloop.drift.factory import build_detector
    from driftloop.drift.ks import KSWindowDetector
    from driftloop.drift.page_hinkley import PageHinkleyDetector
    from driftloop.drift.psi import PSIWindowDetector, population_stability_index
    from driftloop.drift.realized_accuracy import RealizedAccuracyEstimator, wilson_interval
    from driftloop.drift.self_reference import SelfReferencedDetector
    from driftloop.drift.shape import ShapeCusumDetector
    from driftloop.drift.window import WindowTestDetector, WindowTestResult

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AccuracyEstimate": "driftloop.drift.accuracy",
        "ChiSquareWindowDetector": "driftloop.drift.chi_square",
        "CombinedDetector": "driftloop.drift.combined",
        "ConfidenceAccuracyEstimator": "driftloop.drift.cbpe",
        "CusumDetector": "driftloop.drift.cusum",
        "DriftDetector": "driftloop.drift.base",
        "KSWindowDetector": "driftloop.drift.ks",
        "PSIWindowDetector": "driftloop.drift.psi",
        "PageHinkleyDetector": "driftloop.drift.page_hinkley",
        "RealizedAccuracyEstimator": "driftloop.drift.realized_accuracy",
        "SelfReferencedDetector": "driftloop.drift.self_reference",
        "SequentialCalibration": "driftloop.drift.calibration",
        "ShapeCusumDetector": "driftloop.drift.shape",
        "WindowTestDetector": "driftloop.drift.window",
        "WindowTestResult": "driftloop.drift.window",
        "build_detector": "driftloop.drift.factory",
        "calibrate_sequential": "driftloop.drift.calibration",
        "expected_accuracy": "driftloop.drift.cbpe",
        "mean_and_shape_detector": "driftloop.drift.combined",
        "population_stability_index": "driftloop.drift.psi",
        "wilson_interval": "driftloop.drift.realized_accuracy",
    },
)

__all__ = [
    "AccuracyEstimate",
    "ChiSquareWindowDetector",
    "CombinedDetector",
    "ConfidenceAccuracyEstimator",
    "CusumDetector",
    "DriftDetector",
    "KSWindowDetector",
    "PSIWindowDetector",
    "PageHinkleyDetector",
    "RealizedAccuracyEstimator",
    "SelfReferencedDetector",
    "SequentialCalibration",
    "ShapeCusumDetector",
    "WindowTestDetector",
    "WindowTestResult",
    "build_detector",
    "calibrate_sequential",
    "expected_accuracy",
    "mean_and_shape_detector",
    "population_stability_index",
    "wilson_interval",
]
