"""One drift monitor over every feature of a model (``metric: feature.*``, #19 part 5): each
feature tested at the monitor's false-alarm budget divided by the number of features
(Bonferroni), the drifted features named in the message and the status, and a text model
refused when the config is read."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from driftloop.cli.app import app
from driftloop.config import DetectorConfig, MonitorConfig
from driftloop.database import Database
from driftloop.drift.factory import build_detector
from driftloop.drift.feature_set import FeatureSetDetector
from driftloop.drift.window import WindowTestDetector
from driftloop.metrics.points import MetricPoint
from driftloop.metrics.sql import SqlMetricStore
from driftloop.monitors.detectors import DriftDetector
from driftloop.monitors.engine import MonitorEngine
from driftloop.monitors.events import MonitorState
from driftloop.predictors import Feature, InputSchema, ReferenceProfile
from driftloop.predictors.schema import feature_metrics, feature_references
from driftloop.testing.clock import ManualClock
from driftloop.testing.configs import make_config
from feature_alarms import alarms

T0 = 1_699_999_980.0
PLANS = ("basic", "pro", "team")
NUMBERS = ("tenure", "spend", "seats", "age")
SCHEMA = InputSchema.record(
    *(Feature.number(name) for name in NUMBERS), Feature.category("plan", PLANS)
)
K = len(NUMBERS) + 1


def records(count: int, seed: int, *, tenure: float = 24.0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {
            "tenure": rng.gauss(tenure, 8.0),
            "spend": rng.gauss(50.0, 10.0),
            "seats": rng.gauss(5.0, 2.0),
            "age": rng.gauss(40.0, 12.0),
            "plan": rng.choices(PLANS, (0.6, 0.3, 0.1))[0],
        }
        for _ in range(count)
    ]


def profile(seed: int = 1) -> ReferenceProfile:
    numbers, categories = feature_references(SCHEMA, records(2000, seed=seed))
    return ReferenceProfile([], [], {}, 0.0, inputs=numbers, categories=categories)


def test_the_budget_is_split_so_the_model_level_rate_stays_at_its_target() -> None:
    """Unchanged traffic over 4,000 records of 5 features: PSI (its p-value is cheap; KS's
    costs ms) on tumbling windows, where the Bonferroni bound is tight."""
    rate, window, n = 2e-3, 100, 4_000
    reference, rows = profile(), records(n, seed=7)

    def detector(false_alarm_rate: float) -> FeatureSetDetector:
        config = DetectorConfig(algorithm="psi", window=window, false_alarm_rate=false_alarm_rate)
        built = build_detector(config, reference, metric="feature.*")
        assert isinstance(built, FeatureSetDetector)
        for member in built.detectors.values():  # tumbling: one test per window, at r / K * w
            assert isinstance(member, WindowTestDetector)
            member.step, member.alpha = window, built.per_feature_rate * window
        return built

    split = detector(rate)
    assert split.features == tuple(f"feature.{name}" for name in sorted([*NUMBERS, "plan"]))
    assert split.per_feature_rate == pytest.approx(rate / K)
    unsplit = detector(rate * K)  # every feature at the whole budget: K times the rate
    target = rate * n  # false alarms the model-level budget allows over n records: 8
    observed, inflated = alarms(split, SCHEMA, rows), alarms(unsplit, SCHEMA, rows)
    assert observed <= 1.5 * target, (observed, target)
    assert inflated >= 2.5 * target, (inflated, target)


def monitor(message: str = "{{monitor}}: {{drifted_features}} drifted") -> dict[str, Any]:
    return {
        "name": "churn-features",
        "type": "drift",
        "metric": "feature.*",
        "filter": {"model": "churn"},
        "renotify": None,
        "message": message,
        "detector": {"algorithm": "ks", "window": 200, "false_alarm_rate": 1e-5},
    }


def build(config_monitor: MonitorConfig, reference: ReferenceProfile | None) -> DriftDetector:
    assert config_monitor.detector is not None
    return build_detector(config_monitor.detector, reference, metric=config_monitor.metric)


def test_a_drift_on_one_feature_alerts_once_and_names_it(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    database.migrate()
    reference = profile()
    config = make_config(monitors=[monitor()])
    clock = ManualClock(T0 - 60)
    store = SqlMetricStore(database, raw_retention=86400.0, rollup_retention=30 * 86400.0)

    def engine() -> MonitorEngine:
        return MonitorEngine(
            config,
            database,
            store,
            clock=clock,
            detector_factory=build,
            reference_provider=lambda group: reference,
        )

    first = engine()

    def serve(rows: list[dict[str, Any]]) -> list[Any]:
        start = clock.now
        store.write(
            [
                MetricPoint(name, value, start + i * 0.01, {"model": "churn"})
                for i, row in enumerate(rows)
                for name, value in feature_metrics(SCHEMA, row).items()
            ]
        )
        clock.now = start + 60
        return first.evaluate()

    assert serve(records(600, seed=2)) == []
    assert first.status()[0].groups[0].state == MonitorState.OK
    events = serve(records(600, seed=3, tenure=40.0))
    assert [(e.previous, e.state) for e in events] == [(MonitorState.OK, MonitorState.ALERT)]
    assert events[0].message == "churn-features: tenure drifted"
    assert events[0].details["drifted_features"] == ["tenure"]
    assert events[0].value == 1.0  # how many features drifted
    assert serve(records(600, seed=4, tenure=40.0)) == []  # one state, one incident
    assert len(first.list_incidents()) == 1
    (group,) = engine().status()[0].groups  # as stored: what 'monitors status' shows
    assert (group.state, group.drifted_features) == (MonitorState.ALERT, ["tenure"])
    database.dispose()


def test_a_model_without_features_is_an_error_naming_it(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    database.migrate()
    text_profile = ReferenceProfile([0.9] * 100, [40] * 100, {"a": 1.0}, 0.9)
    store = SqlMetricStore(database, raw_retention=86400.0, rollup_retention=86400.0)
    engine = MonitorEngine(
        make_config(monitors=[monitor()]),
        database,
        store,
        detector_factory=build,
        reference_provider=lambda group: text_profile,
    )
    store.write([MetricPoint("model_confidence", 0.9, T0, {"model": "churn"})])
    engine.evaluate(T0 + 60)
    error = engine.status()[0].error
    assert error is not None
    assert "'churn' has no features in its reference profile" in error
    database.dispose()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"type": "threshold", "above": {"critical": 1}}, "needs type: drift"),
        ({"filter": {}}, "name it in filter: {model: NAME}"),
        ({"detector": {"algorithm": "cusum"}}, "ks or psi"),
    ],
)
def test_a_feature_set_monitor_is_checked_when_read(change: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match="feature") as caught:
        make_config(monitors=[{**monitor(), **change}])
    assert words in str(caught.value)


def test_config_check_refuses_a_feature_set_monitor_of_a_text_model(tmp_path: Path) -> None:
    (tmp_path / "driftloop.yaml").write_text(
        "models:\n  churn: {trainer: sklearn}\n"
        "monitors:\n  - name: churn-features\n    type: drift\n    metric: feature.*\n"
        "    filter: {model: churn}\n    detector: {algorithm: ks}\n"
    )
    result = CliRunner().invoke(app, ["config", "check", str(tmp_path / "driftloop.yaml")])
    assert result.exit_code != 0
    assert "covers every feature of model 'churn', but its input schema is not a record" in (
        result.output
    )
    assert "trainer 'sklearn' makes text models" in result.output
