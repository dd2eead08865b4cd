"""Drift of the inputs: the server reports each predictor's per-text input signals (e.g.
``oov_rate``) beside each prediction, and a failing signal never fails the answer."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray

from driftloop.insights import InsightsClient
from driftloop.predictors.inputs import OOV_RATE, VocabularyProfile
from driftloop.serving import InMemoryModelSource
from driftloop.testing.predictors import KeywordPredictor
from driftloop.testing.transports import MemoryTransport

pytestmark = pytest.mark.anyio

URL = "/v1/models/reviews/predict"
KEYWORDS = {"Food - Positive": ["tasty", "fresh"], "Food - Negative": ["stale", "bland"]}


class VocabularyKeywordPredictor(KeywordPredictor):
    """Its vocabulary is its keywords: every other word is unknown to it."""

    def __init__(self, *, broken: bool = False) -> None:
        super().__init__(KEYWORDS)
        self.broken = broken
        self.vocabulary = VocabularyProfile(w for words in KEYWORDS.values() for w in words)

    def input_signals(self, texts: Sequence[str]) -> dict[str, NDArray[np.float64]]:
        if self.broken:
            raise RuntimeError("the vocabulary is gone")
        return {OOV_RATE: self.vocabulary.oov_rates(texts)}


@pytest.fixture(params=[False, True], ids=["signals", "failing-signals"])
def source(request: pytest.FixtureRequest) -> InMemoryModelSource:
    models = InMemoryModelSource()
    models.add("reviews", VocabularyKeywordPredictor(broken=request.param), production=True)
    return models


async def test_each_prediction_reports_its_input_signals(
    client: httpx.AsyncClient,
    predict_headers: dict[str, str],
    insights: InsightsClient,
    transport: MemoryTransport,
    source: InMemoryModelSource,
) -> None:
    texts = ["tasty and fresh", "stale bread, bland soup", "!!"]
    response = await client.post(URL, json={"texts": texts}, headers=predict_headers)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["class"] for p in predictions][:2] == ["Food - Positive", "Food - Negative"]
    assert insights.flush()
    reported = [(p.value, dict(p.tags)) for p in transport.points if p.name == OOV_RATE]
    confidences = [p for p in transport.points if p.name == "model_confidence"]
    assert len(confidences) == len(texts)  # the answer and its other insights never suffer
    predictor = source.load(source.resolve("reviews"))
    assert isinstance(predictor, VocabularyKeywordPredictor)
    if predictor.broken:
        assert reported == []
        return
    # "and" is unknown (1 of 3 words); "bread", "soup" (2 of 4); no words at all: 0
    assert [v for v, _ in reported] == pytest.approx([1 / 3, 2 / 4, 0.0])
    assert [tags for _, tags in reported] == [
        {"model": "reviews", "version": "1", "class": p["class"]} for p in predictions
    ]
