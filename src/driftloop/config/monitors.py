"""The ``monitors`` section: threshold and drift monitors, their detectors and no-data rule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, field_validator, model_validator

from driftloop.backends import installed_plugins
from driftloop.config.serving import ModelConfig
from driftloop.config.values import Duration, StrictModel, Thresholds
from driftloop.errors import ConfigError
from driftloop.messages import MessageTemplate


class NoDataConfig(StrictModel):
    after: Duration = 600.0
    notify: bool = False


DETECTOR_ALGORITHMS = ("cusum", "page_hinkley", "ks", "psi", "chi_square", "shape", "cusum_shape")
DETECTOR_PLUGINS = "driftloop.detectors"
"""The entry-point group of drift detectors that installed packages provide."""


class DetectorConfig(StrictModel):
    """A streaming drift detector on a metric (``type: drift`` monitors)."""

    algorithm: str = "cusum"
    false_alarm_rate: float = Field(1e-5, gt=0, lt=1)
    min_shift: float = Field(0.05, gt=0, description="smallest drop worth detecting")
    window: int = Field(500, ge=20, description="window size for two-sample tests")

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, value: str) -> str:
        if value in DETECTOR_ALGORITHMS:
            return value
        installed = installed_plugins(DETECTOR_PLUGINS)
        if value not in installed:
            raise ValueError(
                f"unknown detector algorithm {value!r}; known: "
                f"{', '.join(sorted(set(DETECTOR_ALGORITHMS) | set(installed)))}; install a "
                f"package that provides it (pip install PACKAGE; it declares the entry point "
                f"group {DETECTOR_PLUGINS!r})"
            )
        return value


class MonitorConfig(StrictModel):
    name: str = Field(min_length=1)
    type: Literal["threshold", "drift"] = "threshold"
    metric: str = "model_confidence"
    aggregation: Literal["avg", "min", "max", "sum", "count", "p50", "p90", "p99"] = "avg"
    window: Duration = 300.0
    group_by: list[str] = Field(default_factory=lambda: ["model"])
    filter: dict[str, str] = Field(default_factory=dict)
    below: Thresholds | None = None
    above: Thresholds | None = None
    require_full_window: bool = False
    min_count: int = Field(1, ge=1, description="points needed in the window for a verdict")
    no_data: NoDataConfig = NoDataConfig()
    renotify: Duration | None = None
    evaluation_delay: Duration = 0.0
    detector: DetectorConfig | None = None
    message: str = "{{monitor}} on {{model}} is {{state}}: {{value}} (threshold {{threshold}})"

    @model_validator(mode="after")
    def _consistent(self) -> MonitorConfig:
        if self.type == "threshold":
            if (self.below is None) == (self.above is None):
                raise ValueError("a threshold monitor needs exactly one of 'below' or 'above'")
            thresholds = self.below or self.above
            assert thresholds is not None
            _check_order(thresholds, below=self.below is not None)
        elif self.detector is None:
            raise ValueError("a drift monitor needs a 'detector' section")
        if self.window <= 0:
            raise ValueError("window must be positive")
        if self.metric == FEATURE_SET_METRIC:
            _check_feature_set(self)
        try:
            MessageTemplate(self.message, name="message")
        except ConfigError as exc:  # so 'driftloop config check' rejects a broken template
            raise ValueError(exc.message) from None
        return self


FEATURE_SET_METRIC = "feature.*"
"""A drift monitor's metric that covers every feature of its model (#19 part 5)."""
TEXT_TRAINERS = ("sklearn", "transformers")
"""Trainers whose models take texts (unless ``models.<name>.predictor`` says otherwise)."""


def _check_feature_set(monitor: MonitorConfig) -> None:
    if monitor.type != "drift" or monitor.detector is None:
        raise ValueError(f"metric {FEATURE_SET_METRIC!r} needs type: drift and a detector")
    if monitor.detector.algorithm not in ("ks", "psi"):
        raise ValueError(
            f"metric {FEATURE_SET_METRIC!r} tests numeric features with detector.algorithm ks "
            f"or psi (category features with chi_square), not {monitor.detector.algorithm!r}"
        )
    if "model" not in monitor.filter:
        raise ValueError(
            f"metric {FEATURE_SET_METRIC!r} covers every feature of one model: name it in "
            "filter: {model: NAME}"
        )


def check_feature_set_model(monitor: MonitorConfig, models: Mapping[str, ModelConfig]) -> None:
    """A ``feature.*`` monitor of a model this config declares must watch a record model: one
    trained by a text trainer with no ``predictor`` takes texts, which have no features."""
    name = monitor.filter.get("model", "")
    model = models.get(name)
    if monitor.metric != FEATURE_SET_METRIC or model is None or model.predictor is not None:
        return
    if model.trainer in TEXT_TRAINERS:
        raise ValueError(
            f"monitor {monitor.name!r} covers every feature of model {name!r}, but its input "
            f"schema is not a record: trainer {model.trainer!r} makes text models, which have "
            "no features (declare models.<name>.predictor with record inputs, or watch text "
            "drift with metric text_length or oov_rate)"
        )


def _check_order(t: Thresholds, *, below: bool) -> None:
    """For ``below``, critical must not lie above warning (and the reverse for ``above``)."""
    w, c = t.warning, t.critical
    if w is None or c is None or w.relative != c.relative:
        return
    if below and c.value > w.value:
        raise ValueError(
            f"below: critical ({c}) must not be above warning ({w}): "
            "values fall past warning before they reach critical"
        )
    if not below and c.value < w.value:
        raise ValueError(f"above: critical ({c}) must not be below warning ({w})")
    for level, threshold, recovery in (
        ("warning", w, t.warning_recovery),
        ("critical", c, t.critical_recovery),
    ):
        if recovery is None or recovery.relative != threshold.relative:
            continue
        wrong_side = recovery.value < threshold.value if below else recovery.value > threshold.value
        if wrong_side:
            side = "at or above" if below else "at or below"
            raise ValueError(f"{level}_recovery ({recovery}) must be {side} {level} ({threshold})")
