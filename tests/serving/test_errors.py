"""Every status code the API answers, each with a JSON error body naming what went wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import pytest
from numpy.typing import NDArray

from driftloop.config import Config
from driftloop.insights import InsightsClient
from driftloop.serving import ApiKeyStore, InMemoryModelSource, Scope, create_app
from driftloop.testing.predictors import KeywordPredictor, review_keyword_predictor

pytestmark = pytest.mark.anyio

URL = "/v1/models/reviews/predict"


def error_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert error["type"]
    assert error["message"]
    return error


# --- 401 / 403 -------------------------------------------------------------------------


async def test_no_key_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json={"text": "x"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = error_of(response)
    assert error["type"] == "AuthError"
    assert "missing API key" in error["message"]


@pytest.mark.parametrize("key", ["nonsense", "dl_0000abcd_" + "x" * 43])
async def test_unknown_key_is_401(client: httpx.AsyncClient, key: str) -> None:
    response = await client.post(URL, json={"text": "x"}, headers={"X-API-Key": key})
    assert response.status_code == 401
    assert error_of(response)["type"] == "AuthError"


async def test_x_api_key_header_and_bearer_both_work(
    client: httpx.AsyncClient, predict_key: str
) -> None:
    for headers in ({"X-API-Key": predict_key}, {"Authorization": f"bearer {predict_key}"}):
        response = await client.post(URL, json={"text": "tasty"}, headers=headers)
        assert response.status_code == 200, headers


async def test_revoked_key_is_401(
    client: httpx.AsyncClient,
    api_keys: ApiKeyStore,
    predict_key: str,
    predict_headers: dict[str, str],
) -> None:
    assert (await client.post(URL, json={"text": "x"}, headers=predict_headers)).is_success
    api_keys.revoke(predict_key.split("_")[1])
    response = await client.post(URL, json={"text": "x"}, headers=predict_headers)
    assert response.status_code == 401
    assert "revoked" in error_of(response)["message"]


async def test_predict_key_on_admin_endpoint_is_403(
    client: httpx.AsyncClient, predict_headers: dict[str, str]
) -> None:
    for path, body in (("deploy", {"version": 2}), ("rollback", None), ("reload", None)):
        response = await client.post(
            f"/v1/models/reviews/{path}", json=body, headers=predict_headers
        )
        assert response.status_code == 403, path
        error = error_of(response)
        assert error["type"] == "ForbiddenError"
        assert "'admin'" in error["message"]


async def test_admin_key_can_predict(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(URL, json={"text": "tasty"}, headers=admin_headers)
    assert response.status_code == 200


# --- 404 / 405 / 409 -------------------------------------------------------------------


async def test_unknown_model_is_404(
    client: httpx.AsyncClient, predict_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/models/nope/predict", json={"text": "x"}, headers=predict_headers
    )
    assert response.status_code == 404
    error = error_of(response)
    assert error["type"] == "NotFoundError"
    assert "served models: reviews" in error["message"]
    assert (await client.get("/v1/models/nope", headers=predict_headers)).status_code == 404


async def test_unknown_version_is_404(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/models/reviews/deploy", json={"version": 9}, headers=admin_headers
    )
    assert response.status_code == 404
    assert "no version 9" in error_of(response)["message"]


async def test_unknown_route_and_method_are_json(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v9/whatever")  # no route family there (/v2 is the OIP's)
    assert missing.status_code == 404
    assert error_of(missing)["type"] == "NotFoundError"
    wrong_method = await client.get(URL)
    assert wrong_method.status_code == 405
    assert error_of(wrong_method)["type"] == "MethodNotAllowedError"


async def test_rollback_without_history_is_409(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post("/v1/models/reviews/rollback", headers=admin_headers)
    assert response.status_code == 409
    assert error_of(response)["type"] == "ConflictError"


# --- 413 / 422: limits and malformed input -----------------------------------------------


async def test_too_many_texts_is_413_naming_the_limit(
    client: httpx.AsyncClient, predict_headers: dict[str, str]
) -> None:
    response = await client.post(URL, json={"texts": ["a"] * 9}, headers=predict_headers)
    assert response.status_code == 413
    error = error_of(response)
    assert error["limit"] == "serving.max_texts_per_request"
    assert "9 texts" in error["message"]


async def test_too_long_text_is_422_naming_the_limit(
    client: httpx.AsyncClient, predict_headers: dict[str, str]
) -> None:
    response = await client.post(URL, json={"texts": ["ok", "x" * 201]}, headers=predict_headers)
    assert response.status_code == 422
    error = error_of(response)
    assert error["limit"] == "serving.max_text_chars"
    assert "text 1 has 201 characters" in error["message"]


async def test_body_over_the_limit_is_413(
    client: httpx.AsyncClient, predict_headers: dict[str, str]
) -> None:
    big = b'{"texts": ["' + b"a" * 5000 + b'"]}'
    response = await client.post(URL, content=big, headers=predict_headers)
    assert response.status_code == 413
    assert error_of(response)["limit"] == "serving.max_body_bytes"


async def test_streamed_body_over_the_limit_is_413_whatever_it_declares(
    client: httpx.AsyncClient, predict_headers: dict[str, str]
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"texts": ["'
        for _ in range(10):
            yield b"a" * 1000
        yield b'"]}'

    response = await client.post(URL, content=chunks(), headers=predict_headers)
    assert response.status_code == 413
    assert error_of(response)["limit"] == "serving.max_body_bytes"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"texts": ["a"', "malformed JSON"),
        (b"", "empty"),
        (b'{"texts": ["caf\xe9"]}', "not valid UTF-8"),
        (b'["a", "b"]', "expected a JSON object"),
        (b'{"texts": [1, 2]}', "texts.0"),
        (b'{"texts": "abc"}', "texts"),
        (b'{"texts": [null]}', "texts.0"),
        (b'{"text": 5}', "text"),
        (b'{"texts": []}', "empty"),
        (b"{}", "exactly one"),
        (b'{"text": "a", "texts": ["b"]}', "exactly one"),
        (b'{"texts": ["a"], "extra": 1}', "extra: unknown field"),
        (b'{"texts": ["\\ud800"]}', "surrogate"),
        (b"[" * 100_000, "malformed JSON"),
    ],
)
async def test_malformed_or_mistyped_bodies_are_422(
    client: httpx.AsyncClient, predict_headers: dict[str, str], content: bytes, message: str
) -> None:
    response = await client.post(URL, content=content[:4000], headers=predict_headers)
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["type"] == "InvalidInputError"
    assert message in error["message"]


@pytest.mark.parametrize(
    "body", [{"version": "2"}, {"version": 0}, {"version": 1.5}, {}, {"version": True}]
)
async def test_bad_deploy_bodies_are_422(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, object]
) -> None:
    response = await client.post("/v1/models/reviews/deploy", json=body, headers=admin_headers)
    assert response.status_code == 422
    assert error_of(response)["type"] == "InvalidInputError"


# --- 500 / 503 ---------------------------------------------------------------------------


class BrokenPredictor(KeywordPredictor):
    """Fails on any text mentioning 'explode' (after a clean warm-up)."""

    format: ClassVar[str] = "keyword"

    def logits(self, texts: Sequence[str]) -> NDArray[np.float64]:
        if any("explode" in t for t in texts):
            raise RuntimeError("model crashed")
        return super().logits(texts)


async def test_a_crashing_model_is_a_json_500_and_the_server_goes_on(
    config: Config, insights: InsightsClient, predict_headers: dict[str, str]
) -> None:
    source = InMemoryModelSource()
    source.add("reviews", BrokenPredictor({"a": ["x"], "b": ["y"]}), production=True)
    app = create_app(config, model_source=source, insights=insights)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t"
        ) as http,
    ):
        response = await http.post(URL, json={"text": "explode"}, headers=predict_headers)
        assert response.status_code == 500
        assert error_of(response) == {  # names the model and the version, not the details
            "type": "PredictionError",
            "message": "model 'reviews' v1 failed to predict (RuntimeError); the traceback "
            "is in the server log",
        }
        after = await http.post(URL, json={"text": "x"}, headers=predict_headers)
        assert after.status_code == 200


async def test_model_without_production_is_503_and_not_ready(
    config: Config, insights: InsightsClient, predict_headers: dict[str, str]
) -> None:
    source = InMemoryModelSource()
    version = source.add("reviews", review_keyword_predictor())
    app = create_app(config, model_source=source, insights=insights)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["models"]["reviews"] == {"ready": False, "version": None}
        response = await http.post(URL, json={"text": "x"}, headers=predict_headers)
        assert response.status_code == 503
        assert error_of(response)["type"] == "BackendUnavailableError"

        # production appears (another process deployed): the poller loads it
        source.set_alias("reviews", "production", version.version, actor="elsewhere")
        for _ in range(100):
            if (await http.get("/readyz")).status_code == 200:
                break
            await _sleep(0.02)
        assert (await http.post(URL, json={"text": "x"}, headers=predict_headers)).is_success


async def _sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


def test_api_keys_are_stored_only_as_hashes(api_keys: ApiKeyStore, tmp_path: Path) -> None:
    created = api_keys.create(Scope.ADMIN, name="ops")
    assert created.key.startswith("dl_")
    database_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("driftloop.db*"))
    assert created.key.encode() not in database_bytes
    secret = created.key.split("_", 2)[2]
    assert secret.encode() not in database_bytes
    assert api_keys.authenticate(created.key).scope is Scope.ADMIN
    [listed] = [k for k in api_keys.list() if k.key_id == created.info.key_id]
    assert listed.name == "ops"
