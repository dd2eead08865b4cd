"""One detector over every feature of a record model (``metric: feature.*``).

Each feature keeps its own two-sample window test against its reference sample: KS or PSI
(the monitor's ``detector.algorithm``) for a numeric or boolean feature, chi-square for a
category feature. The monitor's false-alarm budget ``r`` (per value, as for one feature) is
split evenly: each of the ``k`` features gets ``r / k`` (Bonferroni). The chance that any
feature raises a false alarm is then at most ``k * r / k = r``, whatever the dependence
between features, so the model-level rate stays at its target.

Why Bonferroni and not Holm: Holm orders the ``k`` p-values of one simultaneous family and
gains power only when several hypotheses are rejected at once; here each feature's window
fills and is tested at its own pace (sampling, missing values, a feature absent from some
records), so there is no common moment at which ``k`` p-values exist to be ordered, and the
stream's first rejection, which is all the monitor acts on, is judged at ``r / k`` by Holm too.
"""

from __future__ import annotations

from collections.abc import Mapping

from driftloop.config.monitors import FEATURE_SET_METRIC as FEATURE_SET_METRIC
from driftloop.drift.base import DriftDetector
from driftloop.errors import InvalidInputError


class FeatureSetDetector(DriftDetector):
    """Feature name (``feature.<name>``) → its detector; ``update_feature`` routes a value to
    its feature's detector, and the flags describe that update, like a single detector's."""

    def __init__(self, detectors: Mapping[str, DriftDetector], *, false_alarm_rate: float) -> None:
        super().__init__()
        if not detectors:
            raise InvalidInputError("a feature-set detector needs at least one feature")
        self.detectors: dict[str, DriftDetector] = dict(detectors)
        self.false_alarm_rate = false_alarm_rate
        """The budget of the whole set; each feature's detector runs at this / k."""
        self._drifted: set[str] = set()
        self._last: DriftDetector | None = None

    @property
    def features(self) -> tuple[str, ...]:
        """The ``feature.<name>`` metrics covered, sorted."""
        return tuple(sorted(self.detectors))

    @property
    def per_feature_rate(self) -> float:
        """Each feature's share of the budget (Bonferroni): ``false_alarm_rate / k``."""
        return self.false_alarm_rate / len(self.detectors)

    def update_feature(self, metric: str, x: float) -> None:
        """Feed one value of ``metric`` (a ``feature.<name>``); a feature outside the set (not
        in the model's reference profile) is ignored."""
        detector = self.detectors.get(metric)
        if detector is None:
            return
        detector.update(x)
        self._n_seen += 1
        self._last = detector
        if detector.drift_detected:
            self._drifted.add(metric)

    def update(self, x: float) -> None:
        raise InvalidInputError(
            "a feature-set detector takes each value with its feature: update_feature(metric, x)"
        )

    @property
    def drift_detected(self) -> bool:
        """True right after the update that detected a drift on its feature."""
        return self._last is not None and self._last.drift_detected

    @property
    def warning_detected(self) -> bool:
        """True while any feature's latest update warns."""
        return any(detector.warning_detected for detector in self.detectors.values())

    @property
    def statistic(self) -> float:
        """The largest margin of a feature's statistic over its threshold (drift past 0)."""
        return max(d.statistic - d.threshold for d in self.detectors.values())

    @property
    def threshold(self) -> float:
        return 0.0

    @property
    def drifted_features(self) -> tuple[str, ...]:
        """The features (``feature.<name>``) that drifted since construction or reset, sorted."""
        return tuple(sorted(self._drifted))

    def reset(self) -> None:
        super().reset()
        for detector in self.detectors.values():
            detector.reset()
        self._drifted.clear()
        self._last = None

    def _step(self, x: float) -> tuple[bool, bool]:  # update() is refused before it gets here
        raise InvalidInputError("a feature-set detector takes update_feature(metric, x)")

    def _restart(self) -> None:
        """Nothing of its own: each feature's detector restarts itself after its drift."""
