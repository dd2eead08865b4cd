"""The ``label`` scope (#22 part 7): a key that may send feedback labels and nothing else (a
labelling tool's), with its own rate limit; ``predict`` keys still send feedback as before."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from driftloop.cli import app as cli
from driftloop.config import Config, RateLimitConfig
from driftloop.insights.client import InsightsClient
from driftloop.serving import ApiKeyStore, InMemoryModelSource, Scope, create_app

pytestmark = pytest.mark.anyio


def problem(response: httpx.Response) -> str:
    """What an error answer says, whatever its JSON shape: ``{"error": {"type", "message",
    ...}}`` or ``{"error": "...", "detail": "..."}``."""
    body: Any = response.json()
    error = body.get("error")
    parts = list(error.values()) if isinstance(error, dict) else [error, body.get("detail")]
    return " ".join(str(part) for part in parts if part)


async def predicted_ids(
    client: httpx.AsyncClient, headers: dict[str, str], count: int
) -> list[str]:
    response = await client.post(
        "/v1/models/reviews/predict", headers=headers, json={"texts": ["great food"] * count}
    )
    assert response.status_code == 200, response.text
    return [prediction["id"] for prediction in response.json()["predictions"]]


def feedback(ids: list[str]) -> dict[str, Any]:
    return {"feedback": [{"prediction_id": i, "label": "Food - Positive"} for i in ids]}


async def test_a_label_key_sends_feedback_and_nothing_else(
    client: httpx.AsyncClient, api_keys: ApiKeyStore, predict_headers: dict[str, str]
) -> None:
    label = {"X-API-Key": api_keys.create(Scope.LABEL, name="labelling tool").key}
    ids = await predicted_ids(client, predict_headers, 2)
    sent = await client.post("/v1/models/reviews/feedback", headers=label, json=feedback(ids[:1]))
    assert sent.status_code == 200, sent.text
    assert sent.json()["matched"] == 1
    # a predict key keeps sending feedback, as configured before the scope existed
    also = await client.post(
        "/v1/models/reviews/feedback", headers=predict_headers, json=feedback(ids[1:])
    )
    assert also.status_code == 200, also.text
    for method, path, body in (
        ("POST", "/v1/models/reviews/predict", {"text": "great food"}),
        ("GET", "/v1/models", None),
        ("GET", "/v1/models/reviews", None),
        ("POST", "/v1/insights", {"points": [{"name": "x", "value": 1.0}]}),
        ("POST", "/v1/models/reviews/deploy", {"version": 2}),
    ):
        refused = await client.request(method, path, headers=label, json=body)
        assert refused.status_code == 403, (path, refused.text)
        assert "scope 'label'" in problem(refused), problem(refused)


async def test_label_keys_have_their_own_rate_limit(
    config: Config,
    source: InMemoryModelSource,
    insights: InsightsClient,
    api_keys: ApiKeyStore,
    predict_key: str,
) -> None:
    limited = config.model_copy(
        update={
            "serving": config.serving.model_copy(
                update={"rate_limits": {"label": RateLimitConfig(rate=0.5, burst=2)}}
            )
        }
    )
    app = create_app(limited, model_source=source, insights=insights, api_keys=api_keys)
    label = {"X-API-Key": api_keys.create(Scope.LABEL).key}
    predict = {"X-API-Key": predict_key}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://driftloop.test"
        ) as client,
    ):
        ids = await predicted_ids(client, predict, 1)
        answers = [
            await client.post("/v1/models/reviews/feedback", headers=label, json=feedback(ids))
            for _ in range(3)
        ]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[2].headers["retry-after"] == "2"
        assert "label rate limit" in problem(answers[2])
        for _ in range(3):  # the predict key's scope is not limited
            again = await client.post(
                "/v1/models/reviews/feedback", headers=predict, json=feedback(ids)
            )
            assert again.status_code == 200


def test_keys_create_makes_a_label_key(config: Config, tmp_path: Any) -> None:
    path = tmp_path / "driftloop.yaml"
    path.write_text(f"store: '{config.store}'\n")
    result = CliRunner().invoke(
        cli, ["keys", "create", "--scope", "label", "--json", "-c", str(path)]
    )
    assert result.exit_code == 0, result.output
    assert '"scope": "label"' in result.stdout
    assert "dl_" in result.stdout  # the new key is printed whole, once
