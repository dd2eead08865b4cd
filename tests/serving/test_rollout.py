"""Canary and shadow rollouts: the registry's ``canary`` alias takes about
``pipeline.canary_fraction`` of the requests, the ``shadow`` alias scores every request in the
background without touching the response, and a canary starting and stopping under load fails
no request."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import ClassVar

import anyio
import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from numpy.typing import NDArray

from driftloop.config import Config, PipelineConfig
from driftloop.errors import InvalidInputError
from driftloop.insights import InsightsClient
from driftloop.serving import ApiKeyStore, InMemoryModelSource, create_app
from driftloop.serving.slots import ServedModel
from driftloop.testing.predictors import KeywordPredictor, review_keyword_predictor
from driftloop.testing.transports import MemoryTransport
from waiting import wait_until

pytestmark = pytest.mark.anyio

URL = "/v1/models/reviews/predict"
V1_LABELS = set(review_keyword_predictor().labels)
V2_LABELS = set(review_keyword_predictor(extra_classes=True).labels)


class FailingKeywordPredictor(KeywordPredictor):
    """Loads and warms up, then fails every real call (a broken shadow)."""

    format: ClassVar[str] = "keyword"

    def logits(self, texts: Sequence[str]) -> NDArray[np.float64]:
        if list(texts) != ["driftloop warm-up"]:
            raise RuntimeError("shadow model broke")
        return super().logits(texts)


def served(app: FastAPI) -> ServedModel:
    model: ServedModel = app.state.serving.manager.get("reviews")
    return model


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield http


def canary_config(config: Config, fraction: float) -> Config:
    return config.model_copy(update={"pipeline": PipelineConfig(canary_fraction=fraction)})


async def test_the_canary_answers_about_its_fraction_of_requests(
    config: Config,
    source: InMemoryModelSource,
    insights: InsightsClient,
    api_keys: ApiKeyStore,
    transport: MemoryTransport,
    predict_headers: dict[str, str],
) -> None:
    app = create_app(
        canary_config(config, 0.25),
        model_source=source,
        insights=insights,
        api_keys=api_keys,
        rng=random.Random(7),
    )
    async with running(app) as http:
        source.set_alias("reviews", "canary", 2, actor="pipeline")
        await wait_until(lambda: served(app).canary is not None, "the canary to load")
        versions: list[int] = []
        for number in range(400):
            response = await http.post(
                URL, json={"text": f"cheap {number}"}, headers=predict_headers
            )
            assert response.status_code == 200
            body = response.json()
            assert response.headers["x-driftloop-model-version"] == str(body["version"])
            labels = set(body["predictions"][0]["probabilities"])
            assert labels == (V2_LABELS if body["version"] == 2 else V1_LABELS)
            versions.append(body["version"])
    share = versions.count(2) / len(versions)
    # binomial(400, 0.25): sd ≈ 0.022; five sd either side
    assert 0.14 < share < 0.36, share
    assert set(versions) == {1, 2}
    assert insights.flush()
    tagged = [p.tags["version"] for p in transport.points if p.name == "model_confidence"]
    assert tagged == [str(v) for v in versions]  # each insight names the version that answered
    assert all("shadow" not in p.tags for p in transport.points)


async def test_no_canary_alias_means_production_only_and_removal_ends_it(
    client: httpx.AsyncClient,
    app: FastAPI,
    source: InMemoryModelSource,
    predict_headers: dict[str, str],
) -> None:
    source.set_alias("reviews", "canary", 2, actor="pipeline")
    await wait_until(lambda: served(app).canary is not None, "the canary to load")
    assert source.remove_alias("reviews", "canary", actor="pipeline")
    await wait_until(lambda: served(app).canary is None, "the canary to end")
    for number in range(30):
        response = await client.post(URL, json={"text": f"cheap {number}"}, headers=predict_headers)
        assert response.status_code == 200, response.text
        assert response.json()["version"] == 1
    with pytest.raises(InvalidInputError):
        source.remove_alias("reviews", "production", actor="pipeline")


async def test_a_shadow_never_changes_responses_and_reports_its_own_insights(
    config: Config,
    source: InMemoryModelSource,
    insights: InsightsClient,
    api_keys: ApiKeyStore,
    transport: MemoryTransport,
    predict_headers: dict[str, str],
) -> None:
    texts = ["cheap bargain", "stale bread", "friendly staff"]
    app = create_app(config, model_source=source, insights=insights, api_keys=api_keys)
    async with running(app) as http:
        before = await http.post(URL, json={"texts": texts}, headers=predict_headers)
        source.set_alias("reviews", "shadow", 2, actor="pipeline")
        await wait_until(lambda: served(app).shadow is not None, "the shadow to load")
        during = await http.post(URL, json={"texts": texts}, headers=predict_headers)
        await wait_until(lambda: not app.state.serving.shadow_tasks, "the shadow's scoring")
    for response in (before, during):
        assert response.status_code == 200
        assert response.json()["version"] == 1
        assert response.headers["x-driftloop-model-version"] == "1"
    strip = [{k: v for k, v in p.items() if k != "id"} for p in before.json()["predictions"]]
    assert [
        {k: v for k, v in p.items() if k != "id"} for p in during.json()["predictions"]
    ] == strip
    assert insights.flush()
    confidence = [p for p in transport.points if p.name == "model_confidence"]
    served_points = [p for p in confidence if "shadow" not in p.tags]
    shadow_points = [p for p in confidence if "shadow" in p.tags]
    assert [p.tags["version"] for p in served_points] == ["1"] * 6
    assert len(shadow_points) == len(texts)
    assert all(p.tags["version"] == "2" and p.tags["shadow"] == "true" for p in shadow_points)
    v2 = review_keyword_predictor(extra_classes=True).predict_proba(texts)
    assert sorted(p.value for p in shadow_points) == pytest.approx(sorted(v2.max(axis=1)))
    assert {p.tags["class"] for p in shadow_points} <= V2_LABELS


async def test_a_failing_shadow_never_fails_a_request(
    config: Config,
    insights: InsightsClient,
    api_keys: ApiKeyStore,
    transport: MemoryTransport,
    predict_headers: dict[str, str],
) -> None:
    source = InMemoryModelSource()
    source.add("reviews", review_keyword_predictor(), production=True)
    base = review_keyword_predictor(extra_classes=True)
    source.add("reviews", FailingKeywordPredictor(base.keywords, bias=base.bias))
    app = create_app(config, model_source=source, insights=insights, api_keys=api_keys)
    async with running(app) as http:
        source.set_alias("reviews", "shadow", 2, actor="pipeline")
        await wait_until(lambda: served(app).shadow is not None, "the shadow to load")
        responses = [
            await http.post(URL, json={"text": f"cheap {n}"}, headers=predict_headers)
            for n in range(5)
        ]
        await wait_until(lambda: not app.state.serving.shadow_tasks, "the shadow's scoring")
    assert [r.status_code for r in responses] == [200] * 5
    assert insights.flush()
    assert not [p for p in transport.points if "shadow" in p.tags]


async def test_a_canary_starting_and_stopping_under_load_fails_no_request(
    config: Config,
    source: InMemoryModelSource,
    insights: InsightsClient,
    api_keys: ApiKeyStore,
    predict_headers: dict[str, str],
) -> None:
    app = create_app(
        canary_config(config, 0.5),
        model_source=source,
        insights=insights,
        api_keys=api_keys,
        rng=random.Random(3),
    )
    results: list[tuple[int, int | None]] = []
    stop = anyio.Event()
    async with running(app) as http:

        async def user(number: int) -> None:
            while not stop.is_set():
                response = await http.post(
                    URL, json={"texts": [f"cheap bargain {number}"]}, headers=predict_headers
                )
                version = response.json().get("version") if response.status_code == 200 else None
                results.append((response.status_code, version))

        async with anyio.create_task_group() as users:
            for number in range(6):
                users.start_soon(user, number)
            await wait_until(lambda: len(results) >= 10, "answers from production alone")
            source.set_alias("reviews", "canary", 2, actor="pipeline")
            await wait_until(lambda: served(app).canary is not None, "the canary to load")
            began = len(results)
            await wait_until(
                lambda: sum(version == 2 for _, version in results[began:]) >= 10,
                "the canary to answer",
            )
            source.remove_alias("reviews", "canary", actor="pipeline")
            await wait_until(lambda: served(app).canary is None, "the canary to end")
            ended = len(results)
            await wait_until(lambda: len(results) >= ended + 30, "answers after the canary")
            stop.set()
    assert [status for status, _ in results if status != 200] == []
    assert {version for _, version in results} == {1, 2}
    # a few requests that began on the canary may finish after it ended; none start there later
    assert all(version == 1 for _, version in results[ended + 12 :])


async def test_a_shadow_reports_pairs_with_the_served_answers_and_their_labels(
    config: Config,
    source: InMemoryModelSource,
    insights: InsightsClient,
    api_keys: ApiKeyStore,
    transport: MemoryTransport,
    predict_headers: dict[str, str],
) -> None:
    """Verification's evidence: for each shadowed text, whether the two versions agree and
    the gap between their confidences; a label sent later adds the gap in correctness."""
    texts = ["cheap bargain", "stale bread", "friendly staff", "great coffee"]
    app = create_app(config, model_source=source, insights=insights, api_keys=api_keys)
    async with running(app) as http:
        source.set_alias("reviews", "shadow", 2, actor="pipeline")
        await wait_until(lambda: served(app).shadow is not None, "the shadow to load")
        response = await http.post(URL, json={"texts": texts}, headers=predict_headers)
        await wait_until(lambda: not app.state.serving.shadow_tasks, "the shadow's scoring")
        answers = response.json()["predictions"]
        label = answers[0]["class"]  # v1 is right on the first text
        feedback = await http.post(
            "/v1/models/reviews/feedback",
            headers=predict_headers,
            json={"feedback": [{"prediction_id": answers[0]["id"], "label": label}]},
        )
        assert feedback.status_code == 200, feedback.text
    assert insights.flush()
    v2 = review_keyword_predictor(extra_classes=True)
    v2_rows = v2.predict_proba(texts)
    v2_classes = [v2.labels[i] for i in v2_rows.argmax(axis=1)]
    pair_tags = {"model": "reviews", "version": "2", "shadow": "true", "served": "1"}

    def values(name: str) -> list[float]:
        points = [p for p in transport.points if p.name == name]
        assert all(dict(p.tags) == pair_tags for p in points), points
        return [p.value for p in points]

    assert values("shadow_agreement") == [
        1.0 if shadow == answer["class"] else 0.0
        for shadow, answer in zip(v2_classes, answers, strict=True)
    ]
    assert values("shadow_confidence_gap") == pytest.approx(
        [row.max() - answer["confidence"] for row, answer in zip(v2_rows, answers, strict=True)]
    )
    assert values("shadow_correct_gap") == [float(v2_classes[0] == label) - 1.0]


async def test_a_shadow_scores_its_share_of_the_requests(
    config: Config,
    source: InMemoryModelSource,
    insights: InsightsClient,
    api_keys: ApiKeyStore,
    transport: MemoryTransport,
    predict_headers: dict[str, str],
) -> None:
    shared = config.model_copy(update={"pipeline": PipelineConfig(shadow_fraction=0.25)})
    app = create_app(
        shared, model_source=source, insights=insights, api_keys=api_keys, rng=random.Random(5)
    )
    async with running(app) as http:
        source.set_alias("reviews", "shadow", 2, actor="pipeline")
        await wait_until(lambda: served(app).shadow is not None, "the shadow to load")
        for number in range(400):
            response = await http.post(
                URL, json={"text": f"cheap {number}"}, headers=predict_headers
            )
            assert response.status_code == 200
        await wait_until(lambda: not app.state.serving.shadow_tasks, "the shadow's scoring")
    assert insights.flush()
    shadowed = [p for p in transport.points if p.name == "shadow_agreement"]
    # binomial(400, 0.25): sd ≈ 0.022; five sd either side
    assert 0.14 < len(shadowed) / 400 < 0.36, len(shadowed)
