"""Hot swap under load, in-flight requests finishing on the old version, the registry poller,
rollback and reload, and micro-batching of concurrent requests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import anyio
import httpx
import numpy as np
import pytest
from numpy.typing import NDArray

from driftloop.config import Config
from driftloop.insights import InsightsClient
from driftloop.serving import ApiKeyStore, InMemoryModelSource, create_app
from driftloop.serving.sources import InMemoryModelVersion
from driftloop.testing.predictors import KeywordPredictor, review_keyword_predictor

pytestmark = pytest.mark.anyio

URL = "/v1/models/reviews/predict"
V1_LABELS = set(review_keyword_predictor().labels)
V2_LABELS = set(review_keyword_predictor(extra_classes=True).labels)


class SlowKeywordPredictor(KeywordPredictor):
    """A keyword model with a fixed cost per call, like a model on an accelerator."""

    format: ClassVar[str] = "keyword"
    call_seconds = 0.02

    def logits(self, texts: Sequence[str]) -> NDArray[np.float64]:
        time.sleep(self.call_seconds)
        return super().logits(texts)


def slow(predictor: KeywordPredictor, seconds: float) -> SlowKeywordPredictor:
    model = SlowKeywordPredictor(predictor.keywords, bias=predictor.bias)
    model.call_seconds = seconds
    return model


async def test_concurrent_load_across_a_deploy_has_no_failed_request(
    client: httpx.AsyncClient, predict_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    results: list[tuple[float, int, dict[str, Any], str]] = []
    deployed_at: list[float] = []
    stop = anyio.Event()

    async def user(number: int) -> None:
        while not stop.is_set():
            sent = time.monotonic()
            response = await client.post(
                URL, json={"texts": [f"cheap bargain {number}"]}, headers=predict_headers
            )
            results.append(
                (
                    sent,
                    response.status_code,
                    response.json(),
                    response.headers.get("x-driftloop-model-version", ""),
                )
            )

    async with anyio.create_task_group() as users:
        for number in range(8):
            users.start_soon(user, number)
        await anyio.sleep(0.3)
        deploy = await client.post(
            "/v1/models/reviews/deploy", json={"version": 2}, headers=admin_headers
        )
        deployed_at.append(time.monotonic())
        assert deploy.status_code == 200, deploy.text
        assert deploy.json()["version"] == 2
        await anyio.sleep(0.3)
        stop.set()

    assert len(results) > 40
    assert [status for _, status, _, _ in results if status != 200] == []
    versions = {body["version"] for _, _, body, _ in results}
    assert versions == {1, 2}
    for sent, _, body, header in results:
        assert header == str(body["version"])
        labels = set(body["predictions"][0]["probabilities"])
        assert labels == (V1_LABELS if body["version"] == 1 else V2_LABELS)
        if sent > deployed_at[0]:
            assert body["version"] == 2  # everything that starts after the swap gets v2
    v2_answers = [body for _, _, body, _ in results if body["version"] == 2]
    assert {b["predictions"][0]["class"] for b in v2_answers} == {"Price - Positive"}


async def test_in_flight_request_finishes_on_the_old_version(
    config: Config,
    insights: InsightsClient,
    api_keys: ApiKeyStore,
    predict_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    source = InMemoryModelSource()
    source.add("reviews", slow(review_keyword_predictor(), 0.4), production=True)
    source.add("reviews", review_keyword_predictor(extra_classes=True))
    app = create_app(config, model_source=source, insights=insights, api_keys=api_keys)
    answers: dict[str, httpx.Response] = {}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):

        async def slow_request() -> None:
            answers["old"] = await http.post(URL, json={"text": "cheap"}, headers=predict_headers)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(slow_request)
            await anyio.sleep(0.1)  # the v1 batch is running
            deploy = await http.post(
                "/v1/models/reviews/deploy", json={"version": 2}, headers=admin_headers
            )
            assert deploy.status_code == 200
            assert "old" not in answers  # v2 was loaded beside v1 while v1 was still working
            answers["new"] = await http.post(URL, json={"text": "cheap"}, headers=predict_headers)
    assert answers["old"].json()["version"] == 1
    assert set(answers["old"].json()["predictions"][0]["probabilities"]) == V1_LABELS
    assert answers["new"].json()["version"] == 2
    assert answers["new"].json()["predictions"][0]["class"] == "Price - Positive"


async def test_a_deploy_by_another_process_is_picked_up_by_polling(
    client: httpx.AsyncClient, source: InMemoryModelSource, predict_headers: dict[str, str]
) -> None:
    source.set_alias("reviews", "production", 2, actor="another-process")
    deadline = time.monotonic() + 30
    while True:
        response = await client.post(URL, json={"text": "cheap"}, headers=predict_headers)
        if response.json()["version"] == 2 or time.monotonic() > deadline:
            break
        await anyio.sleep(0.02)
    assert response.json()["version"] == 2


async def test_rollback_and_reload(
    client: httpx.AsyncClient, source: InMemoryModelSource, admin_headers: dict[str, str]
) -> None:
    deployed = await client.post(
        "/v1/models/reviews/deploy", json={"version": 2}, headers=admin_headers
    )
    assert deployed.json()["version"] == 2
    assert source.alias_changes[-1][2:] == (2, source.alias_changes[-1][3])
    assert source.alias_changes[-1][3].startswith("api-key:")
    rolled = await client.post("/v1/models/reviews/rollback", headers=admin_headers)
    assert rolled.status_code == 200
    assert rolled.json()["version"] == 1
    assert source.resolve("reviews").version == 1
    before = rolled.json()["loaded_at"]
    reloaded = await client.post("/v1/models/reviews/reload", headers=admin_headers)
    assert reloaded.status_code == 200
    assert reloaded.json()["version"] == 1
    assert reloaded.json()["loaded_at"] >= before


async def test_concurrent_requests_share_predictor_calls(
    config: Config, insights: InsightsClient, api_keys: ApiKeyStore, predict_headers: dict[str, str]
) -> None:
    model = slow(review_keyword_predictor(), 0.03)
    source = InMemoryModelSource()
    source.add("reviews", model, production=True)
    app = create_app(config, model_source=source, insights=insights, api_keys=api_keys)
    texts = ["tasty", "stale", "friendly", "rude"] * 6
    answers: dict[int, str] = {}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        model.batch_sizes.clear()

        async def one(index: int) -> None:
            response = await http.post(URL, json={"text": texts[index]}, headers=predict_headers)
            answers[index] = response.json()["predictions"][0]["class"]

        async with anyio.create_task_group() as tasks:
            for index in range(len(texts)):
                tasks.start_soon(one, index)
        metrics = (await http.get("/metrics")).text
    expected = {
        "tasty": "Food - Positive",
        "stale": "Food - Negative",
        "friendly": "Service - Positive",
        "rude": "Service - Negative",
    }
    assert answers == {i: expected[t] for i, t in enumerate(texts)}
    assert sum(model.batch_sizes) == len(texts)
    assert len(model.batch_sizes) < len(texts) / 2
    assert max(model.batch_sizes) <= config.serving.max_batch_size
    assert max(model.batch_sizes) > 1
    assert f'driftloop_batch_size_count{{model="reviews"}} {len(model.batch_sizes)}.0' in metrics


class _PausingSource(InMemoryModelSource):
    """Pauses inside ``resolve`` once asked to, as a slow registry read would."""

    def __init__(self) -> None:
        super().__init__()
        self.pause = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def resolve(self, name: str, alias: str = "production") -> InMemoryModelVersion:
        found = super().resolve(name, alias)
        if self.pause and alias == "production":
            self.pause = False
            self.entered.set()
            self.release.wait(5)
        return found


async def test_a_poll_that_read_the_alias_before_a_deploy_does_not_undo_it(
    config: Config, insights: InsightsClient, api_keys: ApiKeyStore, admin_headers: dict[str, str]
) -> None:
    source = _PausingSource()
    source.add("reviews", review_keyword_predictor(), production=True)
    source.add("reviews", review_keyword_predictor(extra_classes=True))
    config = config.model_copy(
        update={"serving": config.serving.model_copy(update={"registry_poll_interval": 0.0})}
    )
    app = create_app(config, model_source=source, insights=insights, api_keys=api_keys)
    manager = app.state.serving.manager
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        source.pause = True
        poll = asyncio.ensure_future(manager.poll_once())  # reads production = v1, then waits
        assert await anyio.to_thread.run_sync(source.entered.wait, 5)
        deploy = asyncio.ensure_future(
            http.post("/v1/models/reviews/deploy", json={"version": 2}, headers=admin_headers)
        )
        await anyio.sleep(0.3)  # the deploy runs (or waits for the poll) meanwhile
        source.release.set()
        assert (await deploy).status_code == 200
        await poll
        assert manager.get("reviews").slot.version == 2
        assert source.resolve("reviews").version == 2
