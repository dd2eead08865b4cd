"""Each prediction reports ``estimated_accuracy`` (1 above its version's threshold, else 0), in
the served answer's insights and in the shadow's; a version with no reference reports none."""

from __future__ import annotations

import httpx
import pytest

from driftloop.config import Config
from driftloop.drift.estimated_accuracy import ESTIMATED_ACCURACY_METRIC
from driftloop.insights import InsightsClient
from driftloop.predictors import ReferenceProfile
from driftloop.serving import ApiKeyStore, InMemoryModelSource, create_app
from driftloop.testing.predictors import review_keyword_predictor
from driftloop.testing.transports import MemoryTransport
from waiting import wait_until

pytestmark = pytest.mark.anyio

URL = "/v1/models/reviews/predict"

REFERENCE = ReferenceProfile(
    confidences=[0.3] * 50 + [0.95] * 50,
    text_lengths=[20] * 100,
    class_mix={"Food - Positive": 1.0},
    mean_confidence=0.625,
    metrics={"accuracy": 0.5},
)
"""Half the held-out predictions were right: the threshold is the median confidence, 0.625."""


@pytest.fixture
def source() -> InMemoryModelSource:
    models = InMemoryModelSource()
    models.add("reviews", review_keyword_predictor(), production=True, reference=REFERENCE)
    models.add("reviews", review_keyword_predictor(extra_classes=True))
    return models


async def test_each_prediction_reports_whether_it_counts_toward_the_estimate(
    client: httpx.AsyncClient,
    predict_headers: dict[str, str],
    insights: InsightsClient,
    transport: MemoryTransport,
) -> None:
    texts = ["so tasty and fresh", "it was a day"]
    response = await client.post(URL, json={"texts": texts}, headers=predict_headers)
    confident, unsure = response.json()["predictions"]
    assert confident["confidence"] > 0.625 > unsure["confidence"]
    assert insights.flush()
    estimated = [
        (p.value, dict(p.tags)) for p in transport.points if p.name == ESTIMATED_ACCURACY_METRIC
    ]
    assert estimated == [
        (1.0, {"model": "reviews", "version": "1", "class": confident["class"]}),
        (0.0, {"model": "reviews", "version": "1", "class": unsure["class"]}),
    ]


async def test_the_shadow_reports_its_own_estimate_only_with_a_reference(
    config: Config,
    insights: InsightsClient,
    api_keys: ApiKeyStore,
    transport: MemoryTransport,
    predict_headers: dict[str, str],
) -> None:
    source = InMemoryModelSource()
    source.add("reviews", review_keyword_predictor(), production=True)
    source.add("reviews", review_keyword_predictor(), reference=REFERENCE)
    app = create_app(config, model_source=source, insights=insights, api_keys=api_keys)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        source.set_alias("reviews", "shadow", 2, actor="pipeline")
        manager = app.state.serving.manager
        await wait_until(lambda: manager.get("reviews").shadow is not None, "the shadow to load")
        response = await http.post(
            URL, json={"texts": ["so tasty and fresh", "it was a day"]}, headers=predict_headers
        )
        await wait_until(lambda: not app.state.serving.shadow_tasks, "the shadow's scoring")
    assert response.json()["version"] == 1
    assert insights.flush()
    estimated = [
        (p.value, dict(p.tags)) for p in transport.points if p.name == ESTIMATED_ACCURACY_METRIC
    ]
    assert [value for value, _ in estimated] == [1.0, 0.0]  # v1 has no reference: none
    assert all(tags["version"] == "2" and tags["shadow"] == "true" for _, tags in estimated)
