"""The label-free accuracy estimate a server reports as ``estimated_accuracy``, and when it holds.

**The estimate** is the average thresholded confidence (ATC, Garg et al., ICLR 2022): on the
version's held-out split, find the confidence ``t`` above which the share of predictions equals
the held-out accuracy; a window's estimated accuracy is then the share of its predictions made
with a confidence above ``t``. The server reports each prediction's ``estimated_accuracy`` as 1
(above ``t``) or 0, so the ``avg`` of the metric over a window is the estimate, and its reference
value is the held-out accuracy (by construction of ``t``).

Why not plain CBPE (the window's mean calibrated confidence, ``avg`` of ``model_confidence``,
see :mod:`driftloop.drift.cbpe`)? Both agree where traffic looks like the held-out split. On
traffic from subtopics a model never saw, the temperature-calibrated confidence stays far too
high (measured on the bundled reviews: 0.56 mean confidence for 0.18 realized accuracy), while
the share above ``t`` falls with the accuracy; ``benchmarks/estimated_accuracy.py`` measures
both, and NannyML's CBPE, against realized accuracy (docs/benchmarks.md).

**When it may not hold.** Calibration is measured on the held-out split only; off that
distribution no estimate from scores is guaranteed. :func:`estimate_window` therefore tests the
window against the version's :class:`~driftloop.predictors.ReferenceProfile`: the confidences,
the text lengths and every input signal the profile records (e.g. ``oov_rate``), each with a
two-sample Kolmogorov-Smirnov test, ``alpha`` split evenly over the tests (Bonferroni). If any
rejects, the estimate is reported with ``holds=False`` and the reasons: the inputs or the
scores have moved away from where the calibration was measured. With no change, a window is
flagged with probability at most ``alpha``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from driftloop.errors import ConfigError, InvalidInputError
from driftloop.predictors import ReferenceProfile

ESTIMATED_ACCURACY_METRIC = "estimated_accuracy"
"""The insight a server reports per prediction: 1 above the version's threshold, else 0."""

DEFAULT_ALPHA = 0.01
"""The chance that a window of unchanged traffic is flagged as "may not hold"."""

MIN_TEST_VALUES = 20
"""A window with fewer values of a signal is not tested on it (too little to tell)."""


@dataclass(frozen=True)
class EstimatedAccuracy:
    """One window's estimate; ``holds`` is False (with the ``reasons``) off the reference."""

    accuracy: float
    n: int
    holds: bool
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "accuracy": self.accuracy,
            "n": self.n,
            "holds": self.holds,
            "reasons": list(self.reasons),
        }


def accuracy_threshold(reference: ReferenceProfile | None) -> float | None:
    """The confidence above which the share of held-out predictions equals the held-out
    accuracy; None when the profile lacks confidences or an accuracy."""
    if reference is None or not reference.confidences or "accuracy" not in reference.metrics:
        return None
    accuracy = float(reference.metrics["accuracy"])
    if not 0.0 <= accuracy <= 1.0:
        raise InvalidInputError(f"a reference accuracy lies in [0, 1], got {accuracy}")
    values = np.asarray(reference.confidences, dtype=np.float64)
    return float(np.quantile(values, 1.0 - accuracy))


def thresholded_accuracy(
    confidences: Sequence[float] | NDArray[np.float64], threshold: float
) -> float:
    """The share of ``confidences`` above ``threshold``: the window's estimated accuracy."""
    values = np.asarray(confidences, dtype=np.float64)
    if values.size == 0:
        raise InvalidInputError("no confidences to estimate accuracy from")
    return float(np.mean(values > threshold))


def reference_signals(reference: ReferenceProfile) -> dict[str, NDArray[np.float64]]:
    """The reference sample of every signal a window is tested on, by metric name."""
    signals = {
        "model_confidence": np.asarray(reference.confidences, dtype=np.float64),
        "text_length": np.asarray(reference.text_lengths, dtype=np.float64),
    }
    for name, values in getattr(reference, "inputs", {}).items():
        signals[name] = np.asarray(values, dtype=np.float64)
    return {name: values for name, values in signals.items() if values.size}


def reasons_estimate_may_not_hold(
    reference: ReferenceProfile,
    window: Mapping[str, Sequence[float] | NDArray[np.float64]],
    *,
    alpha: float = DEFAULT_ALPHA,
) -> tuple[str, ...]:
    """Why the estimate may not hold on ``window`` (metric name → its values): one reason per
    signal whose distribution differs from the reference (KS test at ``alpha`` / tests)."""
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must lie in (0, 1), got {alpha}")
    from scipy import stats  # imported here: status commands import this module's constants

    samples = reference_signals(reference)
    tested = [
        (name, np.asarray(window[name], dtype=np.float64))
        for name in samples
        if name in window and len(window[name]) >= MIN_TEST_VALUES
    ]
    level = alpha / max(len(tested), 1)
    reasons = []
    for name, values in tested:
        result = stats.ks_2samp(values, samples[name], method="asymp")
        if float(result.pvalue) < level:
            reasons.append(
                f"{name} differs from the reference (KS p={float(result.pvalue):.2g} < {level:.2g})"
            )
    return tuple(reasons)


def estimate_window(
    reference: ReferenceProfile,
    window: Mapping[str, Sequence[float] | NDArray[np.float64]],
    *,
    alpha: float = DEFAULT_ALPHA,
) -> EstimatedAccuracy:
    """The estimated accuracy of a window of ``model_confidence`` values (and the other
    signals' values), with whether it may be trusted."""
    threshold = accuracy_threshold(reference)
    if threshold is None:
        raise InvalidInputError(
            "the reference profile has no accuracy or confidences to estimate accuracy from"
        )
    confidences = np.asarray(window.get("model_confidence", ()), dtype=np.float64)
    reasons = reasons_estimate_may_not_hold(reference, window, alpha=alpha)
    return EstimatedAccuracy(
        thresholded_accuracy(confidences, threshold), int(confidences.size), not reasons, reasons
    )
