"""Per-feature insights and drift (#19 part 5): a record model's reference profile keeps a sample
per feature, ``type: drift`` detectors on ``feature.<name>`` test live values against it (KS
and PSI for numbers, chi-square for categories), and the server reports each record's features
(at ``serving.feature_insights_rate``) and each prediction's class as ``predicted_class``."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from numpy.typing import NDArray

from driftloop.config import Config, DetectorConfig
from driftloop.drift.factory import build_detector
from driftloop.errors import ConfigError
from driftloop.insights import InsightsClient
from driftloop.predictors import Feature, InputSchema, Predictor, ReferenceProfile
from driftloop.serving import ApiKeyStore, InMemoryModelSource, Scope, create_app
from driftloop.testing.transports import MemoryTransport

pytestmark = pytest.mark.anyio

PLANS = ("basic", "pro", "team")


class ChurnModel(Predictor):
    """Churns when tenure is short, whatever the plan."""

    inputs = InputSchema.record(
        Feature.number("tenure"),
        Feature.category("plan", PLANS),
        Feature.string("note", optional=True),
    )

    def __init__(self) -> None:
        super().__init__(("stays", "churns"))

    @classmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> ChurnModel:
        return cls()

    def save_files(self, directory: Path) -> dict[str, Any]:
        return {}  # nothing but the manifest

    def predict(self, batch: Sequence[Any]) -> NDArray[np.float64]:
        churn = np.array([1.0 / (1.0 + np.exp(r["tenure"] - 12.0)) for r in batch])
        return np.column_stack([1.0 - churn, churn])


def records(
    count: int, seed: int, *, tenure: float = 24.0, plans: tuple[float, ...] = (0.6, 0.3, 0.1)
) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [
        {"tenure": rng.gauss(tenure, 8.0), "plan": rng.choices(PLANS, plans)[0], "note": None}
        for _ in range(count)
    ]


def drifts(
    detector_config: DetectorConfig, profile: ReferenceProfile, metric: str, values: list[float]
) -> bool:
    detector = build_detector(detector_config, profile, metric=metric)
    for value in values:
        detector.update(value)
        if detector.drift_detected:
            return True
    return False


def test_feature_detectors_test_live_values_against_the_reference_profile() -> None:
    model = ChurnModel()
    profile = model.reference_profile(records(1000, seed=1))
    assert len(profile.inputs["feature.tenure"]) == 1000
    assert "feature.note" not in profile.inputs  # free strings report nothing
    assert list(profile.categories["feature.plan"]) == list(PLANS)
    assert sum(profile.categories["feature.plan"].values()) == 1000
    assert ReferenceProfile.from_dict(profile.to_dict()) == profile

    def live(rows: list[dict[str, Any]], name: str) -> list[float]:
        from driftloop.predictors.schema import feature_metrics

        return [feature_metrics(model.inputs, row)[name] for row in rows]

    same, older = records(400, seed=2), records(400, seed=3, tenure=34.0)
    upsold = records(400, seed=4, plans=(0.2, 0.5, 0.3))
    for algorithm in ("ks", "psi"):
        config = DetectorConfig(algorithm=algorithm, window=200, false_alarm_rate=1e-4)
        assert not drifts(config, profile, "feature.tenure", live(same, "feature.tenure"))
        assert drifts(config, profile, "feature.tenure", live(older, "feature.tenure"))
    chi = DetectorConfig(algorithm="chi_square", window=200, false_alarm_rate=1e-4)
    assert not drifts(chi, profile, "feature.plan", live(same, "feature.plan"))
    assert drifts(chi, profile, "feature.plan", live(upsold, "feature.plan"))
    with pytest.raises(ConfigError, match=re.escape("category features: ['feature.plan']")):
        build_detector(chi, profile, metric="feature.tenure")
    missing = re.escape("no reference sample for metric 'feature.nope'")
    with pytest.raises(ConfigError, match=missing):
        build_detector(DetectorConfig(algorithm="ks"), profile, metric="feature.nope")


@pytest.fixture
def churn_app(config: Config, insights: InsightsClient, api_keys: ApiKeyStore) -> FastAPI:
    source = InMemoryModelSource()
    source.add("reviews", ChurnModel(), production=True)
    serving = config.serving.model_copy(update={"feature_insights_rate": 1.0})
    return create_app(
        config.model_copy(update={"serving": serving}),
        model_source=source,
        insights=insights,
        api_keys=api_keys,
    )


@pytest.fixture
async def churn(churn_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        churn_app.router.lifespan_context(churn_app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=churn_app, raise_app_exceptions=False),
            base_url="http://driftloop.test",
        ) as http,
    ):
        yield http


async def test_served_and_logged_records_report_their_features_and_class(
    churn: httpx.AsyncClient, churn_app: FastAPI, api_keys: ApiKeyStore, transport: MemoryTransport
) -> None:
    predict = {"Authorization": f"Bearer {api_keys.create(Scope.PREDICT).key}"}
    elsewhere = {"Authorization": f"Bearer {api_keys.create(Scope.INSIGHTS).key}"}
    answer = await churn.post(
        "/v1/models/reviews/predict",
        headers=predict,
        json={
            "records": [
                {"tenure": 2.0, "plan": "team"},
                {"tenure": 40, "plan": "basic", "note": "vip"},
            ]
        },
    )
    assert answer.status_code == 200, answer.text
    logged = await churn.post(
        "/v1/models/reviews/predictions",
        headers=elsewhere,
        json={
            "version": 9,
            "predictions": [
                {
                    "id": "row-1",
                    "input": {"tenure": 5.5, "plan": "pro", "note": None},
                    "class": "churns",
                    "confidence": 0.9,
                }
            ],
        },
    )
    assert logged.status_code == 200, logged.text
    churn_app.state.serving.insights.flush()
    by_version: dict[str, list[tuple[str, float]]] = {}
    for point in transport.points:
        if point.name.startswith("feature.") or point.name == "predicted_class":
            by_version.setdefault(point.tags["version"], []).append((point.name, point.value))
    served = sorted(by_version["1"])
    assert served == [
        ("feature.plan", 0.0),
        ("feature.plan", 2.0),
        ("feature.tenure", 2.0),
        ("feature.tenure", 40.0),
        ("predicted_class", 0.0),
        ("predicted_class", 1.0),
    ]
    assert sorted(by_version["9"]) == [
        ("feature.plan", 1.0),
        ("feature.tenure", 5.5),
        ("predicted_class", 1.0),
    ]


async def test_feature_insights_are_sampled_at_the_configured_rate(
    config: Config, insights: InsightsClient, api_keys: ApiKeyStore, transport: MemoryTransport
) -> None:
    source = InMemoryModelSource()
    source.add("reviews", ChurnModel(), production=True)
    app = create_app(
        config.model_copy(
            update={"serving": config.serving.model_copy(update={"feature_insights_rate": 0.0})}
        ),
        model_source=source,
        insights=insights,
        api_keys=api_keys,
    )
    predict = {"Authorization": f"Bearer {api_keys.create(Scope.PREDICT).key}"}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://driftloop.test"
        ) as http,
    ):
        answer = await http.post(
            "/v1/models/reviews/predict",
            headers=predict,
            json={"record": {"tenure": 3.0, "plan": "pro"}},
        )
        assert answer.status_code == 200, answer.text
        insights.flush()
    names = {point.name for point in transport.points}
    assert {"predicted_class", "model_confidence"} <= names
    assert not any(name.startswith("feature.") for name in names)
