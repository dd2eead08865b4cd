"""``build_detector``: a :class:`~driftloop.config.DetectorConfig` and the model's reference
profile in, a ready detector out (what ``type: drift`` monitors run)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from driftloop.backends import PluginFamily
from driftloop.drift.base import DriftDetector
from driftloop.drift.feature_set import FEATURE_SET_METRIC
from driftloop.drift.self_reference import SelfReferencedDetector
from driftloop.errors import ConfigError

if TYPE_CHECKING:  # types only: drift/ imports numpy and scipy, nothing heavier, at run time
    from driftloop.config import DetectorConfig
    from driftloop.predictors import ReferenceProfile

# each builder imports its detector: a command that reads monitor states (status, monitors ls)
# builds the factory but no detector, and does not pay for scipy

REFERENCE_WARMUP = 2_000
"""Values a detector collects as its own reference when the model has no reference profile."""

NUMERIC_REFERENCES: dict[str, Callable[[ReferenceProfile], list[float]]] = {
    "model_confidence": lambda profile: [float(c) for c in profile.confidences],
    "confidence": lambda profile: [float(c) for c in profile.confidences],
    "text_length": lambda profile: [float(n) for n in profile.text_lengths],
}
"""Metric name → the reference sample a numeric detector (every algorithm but chi_square)
uses."""

CLASS_METRICS = frozenset({"predicted_class"})
"""Metric names whose values are predicted classes (the chi-square detector's input): the
served class's index among the version's labels."""
FEATURE_PREFIX = "feature."
"""``feature.<name>``: a record feature's value, or a category feature's index among its
categories (KS/PSI and the sequential detectors against the profile's ``inputs``, chi-square
against its ``categories``)."""

DetectorBuilder = Callable[["DetectorConfig", "ReferenceProfile | None", str], DriftDetector]

DETECTORS: PluginFamily[DetectorBuilder] = PluginFamily("detector", noun="algorithm")
"""``detector.algorithm`` → ``build(config, reference, metric) -> DriftDetector``; installed
packages add algorithms in the entry-point group ``driftloop.detectors``."""
for _algorithm in ("chi_square", "cusum", "page_hinkley", "shape", "cusum_shape", "ks", "psi"):
    DETECTORS.register(_algorithm, f"driftloop.drift.factory:_{_algorithm}")


def build_detector(
    config: DetectorConfig, reference: ReferenceProfile | None, *, metric: str = "model_confidence"
) -> DriftDetector:
    """The detector ``config`` describes, against ``reference`` (``None``: the first
    ``REFERENCE_WARMUP`` values of the stream become the reference); built-in or from an
    installed package (:data:`DETECTORS`)."""
    if metric == FEATURE_SET_METRIC:
        return feature_set_detector(config, reference)
    build = DETECTORS.load(config.algorithm, "monitors[].detector.algorithm")
    return build(config, reference, metric)


FEATURE_SET_ALGORITHMS = ("ks", "psi")
"""What ``feature.*`` runs on a numeric feature (a category feature takes chi-square)."""


def feature_metrics_of(reference: ReferenceProfile) -> tuple[list[str], list[str]]:
    """The ``feature.<name>`` metrics a reference profile has samples of: (numeric, category),
    each sorted."""
    numeric = sorted(name for name in reference.inputs if name.startswith(FEATURE_PREFIX))
    categories = sorted(name for name in reference.categories if name.startswith(FEATURE_PREFIX))
    return numeric, categories


def feature_set_detector(
    config: DetectorConfig, reference: ReferenceProfile | None
) -> DriftDetector:
    """``metric: feature.*``: one detector per feature of the model's reference profile (its
    declared input schema's numbers, booleans and categories), each at ``false_alarm_rate / k``
    (Bonferroni, see :mod:`driftloop.drift.feature_set`)."""
    from driftloop.drift.feature_set import FeatureSetDetector

    if config.algorithm not in FEATURE_SET_ALGORITHMS:
        raise ConfigError(
            f"metric {FEATURE_SET_METRIC!r} tests numeric features with one of "
            f"{list(FEATURE_SET_ALGORITHMS)} (category features with chi_square), "
            f"not {config.algorithm!r}"
        )
    if reference is None:
        raise ConfigError(
            f"metric {FEATURE_SET_METRIC!r} needs the model's reference profile with a sample "
            "per feature (register the version with --reference, or train it with a trainer "
            "that profiles its held-out split); this version has none"
        )
    numeric, categories = feature_metrics_of(reference)
    if not numeric and not categories:
        raise ConfigError(
            f"metric {FEATURE_SET_METRIC!r} covers the features of a record model, but the "
            "model's reference profile has no feature samples (a text model has no features)"
        )
    share = config.model_copy(
        update={"false_alarm_rate": config.false_alarm_rate / (len(numeric) + len(categories))}
    )
    detectors: dict[str, DriftDetector] = {}
    for metric in numeric:
        detectors[metric] = DETECTORS.load(config.algorithm, "monitors[].detector.algorithm")(
            share, reference, metric
        )
    for metric in categories:
        detectors[metric] = _chi_square(share, reference, metric)
    return FeatureSetDetector(detectors, false_alarm_rate=config.false_alarm_rate)


def _numeric(
    config: DetectorConfig,
    reference: ReferenceProfile | None,
    metric: str,
    make: Callable[[list[float]], DriftDetector],
) -> DriftDetector:
    """A detector on a numeric metric: ``make(reference values)`` against the metric's sample
    of the reference profile, or against the stream's first values when there is none."""
    if reference is None:
        return SelfReferencedDetector(make, warmup=REFERENCE_WARMUP)
    sample = NUMERIC_REFERENCES.get(metric)
    if sample is not None:
        return make(sample(reference))
    if metric in reference.inputs:  # an input signal the predictor reports (e.g. oov_rate)
        return make([float(v) for v in reference.inputs[metric]])
    raise ConfigError(
        f"detector {config.algorithm!r} has no reference sample for metric {metric!r}; "
        f"known: {sorted(set(NUMERIC_REFERENCES) | set(reference.inputs))}"
    )


def _cusum(
    config: DetectorConfig, reference: ReferenceProfile | None, metric: str
) -> DriftDetector:
    from driftloop.drift.cusum import CusumDetector

    return _numeric(
        config,
        reference,
        metric,
        lambda values: CusumDetector(
            values, false_alarm_rate=config.false_alarm_rate, min_shift=config.min_shift
        ),
    )


def _page_hinkley(
    config: DetectorConfig, reference: ReferenceProfile | None, metric: str
) -> DriftDetector:
    from driftloop.drift.page_hinkley import PageHinkleyDetector

    return _numeric(
        config,
        reference,
        metric,
        lambda values: PageHinkleyDetector(
            values, false_alarm_rate=config.false_alarm_rate, min_shift=config.min_shift
        ),
    )


def _shape(
    config: DetectorConfig, reference: ReferenceProfile | None, metric: str
) -> DriftDetector:
    from driftloop.drift.shape import ShapeCusumDetector

    return _numeric(
        config,
        reference,
        metric,
        lambda values: ShapeCusumDetector(values, false_alarm_rate=config.false_alarm_rate),
    )


def _cusum_shape(
    config: DetectorConfig, reference: ReferenceProfile | None, metric: str
) -> DriftDetector:
    from driftloop.drift.combined import mean_and_shape_detector

    return _numeric(
        config,
        reference,
        metric,
        lambda values: mean_and_shape_detector(
            values, false_alarm_rate=config.false_alarm_rate, min_shift=config.min_shift
        ),
    )


def _ks(config: DetectorConfig, reference: ReferenceProfile | None, metric: str) -> DriftDetector:
    from driftloop.drift.ks import KSWindowDetector

    return _numeric(
        config,
        reference,
        metric,
        lambda values: KSWindowDetector(
            values, window=config.window, false_alarm_rate=config.false_alarm_rate
        ),
    )


def _psi(config: DetectorConfig, reference: ReferenceProfile | None, metric: str) -> DriftDetector:
    from driftloop.drift.psi import PSIWindowDetector

    return _numeric(
        config,
        reference,
        metric,
        lambda values: PSIWindowDetector(
            values, window=config.window, false_alarm_rate=config.false_alarm_rate
        ),
    )


def _chi_square(
    config: DetectorConfig, reference: ReferenceProfile | None, metric: str
) -> DriftDetector:
    from driftloop.drift.chi_square import ChiSquareWindowDetector

    feature = metric.startswith(FEATURE_PREFIX)
    if metric not in CLASS_METRICS and not feature:
        raise ConfigError(
            f"the chi_square detector tests predicted classes or a category feature; metric "
            f"{metric!r} is not one of {sorted(CLASS_METRICS)} or feature.<name>"
        )
    rate, window = config.false_alarm_rate, config.window
    if reference is None:

        def make(values: list[float]) -> DriftDetector:
            counts = Counter(int(v) for v in values)
            mix = {str(i): counts.get(i, 0) / len(values) for i in range(max(counts) + 1)}
            return ChiSquareWindowDetector(mix, len(values), window=window, false_alarm_rate=rate)

        return SelfReferencedDetector(make, warmup=REFERENCE_WARMUP)
    if feature:  # a category feature's index among its categories, against its reference mix
        counts = reference.categories.get(metric)
        if not counts or sum(counts.values()) < 1:
            raise ConfigError(
                f"the reference profile has no categories of {metric!r} for the chi_square "
                f"detector; category features: {sorted(reference.categories)}"
            )
        return ChiSquareWindowDetector(
            counts, sum(counts.values()), window=window, false_alarm_rate=rate
        )
    if not reference.class_mix:
        raise ConfigError("the reference profile has no class mix for the chi_square detector")
    return ChiSquareWindowDetector(
        reference.class_mix,
        max(1, len(reference.confidences)),
        window=window,
        false_alarm_rate=rate,
    )
