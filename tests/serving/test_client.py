"""``driftloop.Client`` and ``driftloop.AsyncClient`` against a real uvicorn server: every
operation, and errors raised as driftloop's own exception classes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from numpy.typing import NDArray

import driftloop
from driftloop import Feature, InputSchema, Predictor
from driftloop.client import AsyncClient, Client, InsightPoint
from driftloop.config import Config, RateLimitConfig
from driftloop.errors import (
    AuthError,
    BackendUnavailableError,
    ForbiddenError,
    InvalidInputError,
    InvalidTextError,
    LimitError,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitedError,
)
from driftloop.insights import InsightsClient
from driftloop.serving import ApiKeyStore, InMemoryModelSource, Scope, create_app
from driftloop.testing.transports import MemoryTransport
from serving.live import live_server
from waiting import wait_for

MODEL = "reviews"


@pytest.fixture
def url(app: FastAPI) -> Iterator[str]:
    with live_server(app) as base:
        yield base


def test_predict_feedback_and_models(url: str, predict_key: str) -> None:
    with Client(url, predict_key) as client:
        result = client.predict(MODEL, ["tasty soup", "rude waiter"])
        assert result.model == MODEL
        assert result.version == 1
        assert [p.label for p in result.predictions] == ["Food - Positive", "Service - Negative"]
        first = result.predictions[0]
        assert first.confidence == max(first.probabilities.values())
        feedback = client.feedback(
            MODEL, [(first.id, "Food - Positive"), (result.predictions[1].id, "Food - Negative")]
        )
        assert (feedback.accepted, feedback.matched, feedback.relabelled) == (2, 2, 0)
        again = client.feedback(MODEL, [(first.id, "Food - Negative")])
        assert again.relabelled == 1
        [status] = client.models()
        assert (status.name, status.ready, status.version) == (MODEL, True, 1)
        assert status.labels == list(first.probabilities)
        assert "loaded_at" in status.extra
        assert client.model(MODEL) == status


def test_deploy_and_rollback_need_admin(url: str, predict_key: str, admin_key: str) -> None:
    with Client(url, predict_key) as client, pytest.raises(ForbiddenError, match="403"):
        client.deploy(MODEL, 2)
    with Client(url, admin_key) as admin:
        assert admin.deploy(MODEL, 2).version == 2
        assert admin.predict(MODEL, ["tasty"]).version == 2
        assert admin.rollback(MODEL).version == 1


def test_errors_are_driftloops_own_classes(url: str, predict_key: str) -> None:
    with Client(url, predict_key) as client:
        with pytest.raises(NotFoundError, match="404") as missing:
            client.predict("no-such-model", ["x"])
        assert missing.value.status_code == 404
        with pytest.raises(PayloadTooLargeError, match="max_texts_per_request") as many:
            client.predict(MODEL, ["x"] * 9)
        assert isinstance(many.value, LimitError)
        assert many.value.limit == "serving.max_texts_per_request"
        with pytest.raises(InvalidInputError, match="max_text_chars") as long:
            client.predict(MODEL, ["x" * 201])
        assert long.value.status_code == 422
        assert isinstance(long.value, InvalidTextError)
        assert long.value.limit == "serving.max_text_chars"
        with pytest.raises(InvalidInputError, match="list of texts"):
            client.predict(MODEL, "one text")
    with Client(url, "dl_00000000_" + "x" * 43) as stranger, pytest.raises(AuthError, match="401"):
        stranger.models()
    with Client(url) as anonymous, pytest.raises(AuthError, match="401"):
        anonymous.models()


def test_a_server_that_is_not_there_is_unavailable(url: str, predict_key: str) -> None:
    port = int(url.rsplit(":", 1)[1])
    with (
        Client(
            f"http://127.0.0.1:{port + 1 if port < 65535 else 1}", predict_key, timeout=2
        ) as client,
        pytest.raises(BackendUnavailableError),
    ):
        client.models()


def test_report_insights(url: str, api_keys: ApiKeyStore, transport: MemoryTransport) -> None:
    key = api_keys.create(Scope.INSIGHTS, name="flask").key
    with Client(url, key) as client:
        accepted = client.report_insights(
            [
                InsightPoint(
                    "model_confidence", 0.8, {"model": "elsewhere"}, timestamp=1.76e9, point_id="a"
                ),
                InsightPoint("latency_ms", 3.0),
            ]
        )
        assert accepted == 2
        with pytest.raises(InvalidInputError, match="not finite"):
            client.report_insights([InsightPoint("x", float("nan"))])
        with pytest.raises(ForbiddenError):
            client.predict(MODEL, ["x"])
    wait_for(lambda: len(transport.points) >= 2, 30, "both insights published")
    by_name = {p.name: p for p in transport.points}
    assert by_name["model_confidence"].timestamp == 1.76e9
    assert by_name["model_confidence"].point_id == "a"
    assert dict(by_name["model_confidence"].tags) == {"model": "elsewhere"}


@pytest.mark.anyio
async def test_async_client_has_the_same_operations(
    url: str, predict_key: str, admin_key: str
) -> None:
    async with AsyncClient(url, predict_key) as client:
        result = await client.predict(MODEL, ["tasty soup"])
        assert result.predictions[0].label == "Food - Positive"
        feedback = await client.feedback(MODEL, [(result.predictions[0].id, "Food - Positive")])
        assert feedback.matched == 1
        assert [m.name for m in await client.models()] == [MODEL]
        with pytest.raises(NotFoundError):
            await client.model("nope")
    async with AsyncClient(url, admin_key) as admin:
        assert (await admin.deploy(MODEL, 2)).version == 2
        assert (await admin.rollback(MODEL)).version == 1
    sync_methods = {n for n in vars(Client) if not n.startswith("_")} - {"close"}
    async_methods = {n for n in vars(AsyncClient) if not n.startswith("_")} - {"aclose"}
    assert sync_methods == async_methods


@pytest.mark.anyio
async def test_a_rate_limited_client_learns_when_to_retry(
    config: Config,
    source: InMemoryModelSource,
    insights: InsightsClient,
    api_keys: ApiKeyStore,
    predict_key: str,
) -> None:
    limited = config.model_copy(
        update={
            "serving": config.serving.model_copy(
                update={"rate_limits": {"predict": RateLimitConfig(rate=0.5, burst=1)}}
            )
        }
    )
    app = create_app(limited, model_source=source, insights=insights, api_keys=api_keys)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(
            "http://driftloop.test", predict_key, transport=httpx.ASGITransport(app=app)
        ) as client,
    ):
        await client.models()
        with pytest.raises(BackendUnavailableError, match="429") as refused:
            await client.models()
    assert isinstance(refused.value, RateLimitedError)
    assert refused.value.retry_after == 2.0


class ChurnPredictor(Predictor):
    """A record classifier: the shorter the tenure, the likelier ``yes`` (churns)."""

    inputs = InputSchema.record(
        Feature.integer("tenure_months"), Feature.category("plan", ["basic", "pro"])
    )

    def __init__(self) -> None:
        super().__init__(labels=("no", "yes"))

    @classmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> ChurnPredictor:
        return cls()

    def save_files(self, directory: Path) -> dict[str, Any]:
        return {}  # no files: the in-memory source hashes the manifest alone

    def predict(self, batch: Sequence[Any]) -> NDArray[np.float64]:
        churn = np.array([1.0 / (1.0 + row["tenure_months"]) for row in batch])
        return np.column_stack([1.0 - churn, churn])


class SpendPredictor(Predictor):
    """A record regression: spend = 2 * tenure + 10, within +- 1."""

    inputs = InputSchema.record(Feature.integer("tenure_months"))
    output = "regression"

    @classmethod
    def load_files(cls, directory: Path, manifest: dict[str, Any]) -> SpendPredictor:
        return cls()

    def save_files(self, directory: Path) -> dict[str, Any]:
        return {}  # no files: the in-memory source hashes the manifest alone

    def predict(self, batch: Sequence[Any]) -> NDArray[np.float64]:
        value = np.array([2.0 * row["tenure_months"] + 10.0 for row in batch])
        return np.column_stack([value, value - 1.0, value + 1.0])


def test_predict_takes_records_for_a_record_model(
    config: Config, insights: InsightsClient, api_keys: ApiKeyStore, predict_key: str
) -> None:
    source = InMemoryModelSource()
    source.add("churn", ChurnPredictor(), production=True)
    source.add("spend", SpendPredictor(), production=True)
    app = create_app(
        config, model_source=source, insights=insights, api_keys=api_keys, models=["churn", "spend"]
    )
    customers = [{"tenure_months": 0, "plan": "basic"}, {"tenure_months": 3, "plan": "pro"}]
    with live_server(app) as url, Client(url, predict_key) as client:
        churn = client.predict("churn", records=customers)
        assert [p.label for p in churn.predictions] == ["yes", "no"]
        assert churn.predictions[1].probabilities == pytest.approx({"no": 0.75, "yes": 0.25})
        assert churn.predictions[1].value is None
        assert client.feedback("churn", [(churn.predictions[0].id, "yes")]).matched == 1
        [spend] = client.predict("spend", records=[{"tenure_months": 5}]).predictions
        assert (spend.label, spend.confidence, spend.probabilities) == (None, None, {})
        assert (spend.value, spend.interval) == (20.0, (19.0, 21.0))
        with pytest.raises(InvalidInputError, match=r"records\.0\.plan") as refused:
            client.predict("churn", records=[{"tenure_months": 1, "plan": "gold"}])
        assert refused.value.status_code == 422
        with pytest.raises(InvalidInputError, match="wrap one record in a list"):
            client.predict("churn", records=customers[0])  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="not as texts"):
            client.predict("churn", customers)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="either texts"):
            client.predict("churn")

        async def predict_async() -> list[str | None]:
            async with AsyncClient(url, predict_key) as asynchronous:
                result = await asynchronous.predict("churn", records=customers)
            return [p.label for p in result.predictions]

        assert asyncio.run(predict_async()) == ["yes", "no"]


def test_the_client_is_exported_at_the_top() -> None:
    assert driftloop.Client is Client
    assert driftloop.AsyncClient is AsyncClient
