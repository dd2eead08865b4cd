"""One error boundary (#23 part 4): every route family of the whole system's app answers a
provoked error with the one body, ``{"error": {"type", "message"}}``, the status of the
:mod:`driftloop.errors` class it names, and what that class means (an unknown monitor is "no
monitor", not "no such endpoint")."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import pytest
from fastapi.testclient import TestClient

from driftloop import errors
from driftloop.config import Config
from driftloop.serving import Scope
from driftloop.system import DriftloopSystem

HOOK_SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DriftloopSystem]:
    root: Path = tmp_path_factory.mktemp("boundary")
    config = Config.model_validate(
        {
            "store": f"sqlite:///{root}/driftloop.db",
            "storage": f"file://{root}/storage",
            "base_dir": root,
            "models": {"reviews": {}},
            "monitors": [{"name": "confidence", "below": {"warning": 0.8, "critical": 0.7}}],
            "hooks": {"secret": HOOK_SECRET},
            "serving": {"rate_limits": {"label": {"rate": 0.001, "burst": 1}}},
        }
    )
    built = DriftloopSystem(config)
    built.database.migrate()
    yield built
    built.insights.close()


@pytest.fixture(scope="module")
def client(system: DriftloopSystem) -> Iterator[TestClient]:
    with TestClient(system.create_app(poll=False), base_url="http://driftloop.test") as http:
        yield http


class Answer(Protocol):
    """An HTTP answer (the test client's response)."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


def one_shape(response: Answer) -> dict[str, Any]:
    """The error of an answer in the one shape: a driftloop error class of that status."""
    assert response.headers["content-type"] == "application/json", response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) <= {"type", "message", "limit"}, error
    assert isinstance(error["message"], str)
    assert error["message"]
    named = getattr(errors, error["type"], None)
    assert isinstance(named, type), error
    assert issubclass(named, errors.DriftloopError)
    assert named.status_code == response.status_code, (error, response.status_code)
    return error


def key(system: DriftloopSystem, scope: Scope) -> dict[str, str]:
    return {"Authorization": f"Bearer {system.api_keys.create(scope).key}"}


# (family, method, path, key scope, body, status, type, words in the message)
PROVOKED: list[tuple[str, str, str, Scope | None, Any, int, str, str]] = [
    (
        "predict",
        "POST",
        "/v1/models/nope/predict",
        Scope.PREDICT,
        {"text": "x"},
        404,
        "NotFoundError",
        "served models: reviews",
    ),
    (
        "predict",
        "POST",
        "/v1/models/reviews/predict",
        Scope.PREDICT,
        {"text": "x"},
        503,
        "BackendUnavailableError",
        "no loaded production version",
    ),
    (
        "feedback",
        "POST",
        "/v1/models/nope/feedback",
        Scope.LABEL,
        {"feedback": [{"prediction_id": "p", "label": "l"}]},
        404,
        "NotFoundError",
        "nope",
    ),
    (
        "models",
        "POST",
        "/v1/models/reviews/deploy",
        Scope.PREDICT,
        {"version": 1},
        403,
        "ForbiddenError",
        "'admin'",
    ),
    (
        "insights",
        "POST",
        "/v1/insights",
        Scope.INSIGHTS,
        {"points": "x"},
        422,
        "InvalidInputError",
        "points",
    ),
    (
        "monitors API",
        "GET",
        "/v1/monitors/nope",
        Scope.ADMIN,
        None,
        404,
        "NotFoundError",
        "no monitor 'nope'",
    ),
    (
        "monitors API",
        "GET",
        "/v1/incidents",
        Scope.ADMIN,
        {"status": "closed"},
        422,
        "InvalidInputError",
        "unknown incident status",
    ),
    (
        "pipeline API",
        "POST",
        "/v1/models/nope/retrain",
        Scope.ADMIN,
        {},
        404,
        "NotFoundError",
        "model 'nope' is not configured",
    ),
    (
        "pipeline API",
        "GET",
        "/v1/jobs/ffffffff",
        Scope.ADMIN,
        None,
        404,
        "NotFoundError",
        "no retrain job 'ffffffff'",
    ),
    ("pipeline API", "GET", "/v1/jobs", None, None, 401, "AuthError", "missing API key"),
    (
        "dashboard JSON",
        "GET",
        "/dashboard/api/models/reviews?start=soon",
        Scope.DASHBOARD,
        None,
        422,
        "InvalidInputError",
        "start must be a unix time",
    ),
    (
        "dashboard JSON",
        "GET",
        "/dashboard/api/models",
        Scope.PREDICT,
        None,
        403,
        "ForbiddenError",
        "dashboard",
    ),
    (
        "dashboard assets",
        "GET",
        "/dashboard/static/nope.js",
        None,
        None,
        404,
        "NotFoundError",
        "no such asset: nope.js",
    ),
    ("inbound hooks", "POST", "/v1/hooks/alert", None, {"title": "x"}, 401, "AuthError", "webhook"),
    ("graphs", "GET", f"/v1/graphs/{'f' * 32}.png", None, None, 404, "NotFoundError", "no graph"),
    (
        "routing",
        "GET",
        "/v1/nowhere",
        None,
        None,
        404,
        "NotFoundError",
        "no such endpoint: GET /v1/nowhere",
    ),
]


@pytest.mark.parametrize(
    ("family", "method", "path", "scope", "body", "status", "kind", "says"),
    PROVOKED,
    ids=[f"{row[0]} {row[5]}" for row in PROVOKED],
)
def test_every_route_family_answers_an_error_in_the_one_shape(
    client: TestClient,
    system: DriftloopSystem,
    family: str,
    method: str,
    path: str,
    scope: Scope | None,
    body: Any,
    status: int,
    kind: str,
    says: str,
) -> None:
    headers = key(system, scope) if scope is not None else {}
    if method == "GET" and isinstance(body, dict):
        response = client.get(path, params=body, headers=headers)
    else:
        response = client.request(method, path, json=body, headers=headers)
    assert response.status_code == status, (family, response.text)
    error = one_shape(response)
    assert error["type"] == kind, (family, error)
    assert says in error["message"], (family, error)
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


def test_a_rate_limited_key_is_told_when_to_come_back(
    client: TestClient, system: DriftloopSystem
) -> None:
    headers = key(system, Scope.LABEL)
    body = {"feedback": [{"prediction_id": "p", "label": "l"}]}
    assert client.post("/v1/models/nope/feedback", json=body, headers=headers).status_code == 404
    refused = client.post("/v1/models/nope/feedback", json=body, headers=headers)
    assert refused.status_code == 429
    assert one_shape(refused)["type"] == "RateLimitedError"
    assert int(refused.headers["retry-after"]) >= 1


def test_an_oversized_body_names_the_limit(client: TestClient, system: DriftloopSystem) -> None:
    too_large = b"x" * (system.config.serving.max_body_bytes + 1)
    response = client.post("/v1/hooks/alert", content=too_large)
    assert response.status_code == 413
    error = one_shape(response)
    assert (error["type"], error["limit"]) == ("LimitError", "serving.max_body_bytes")
