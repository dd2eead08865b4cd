"""schemathesis against the OpenAPI document of the whole loop's app (DriftloopSystem over a
trained sklearn model), every operation called three times per generated case: without a key,
with a ``predict`` key and with an ``admin`` key. No answer may be a 5xx, and nothing outside the
public endpoints may answer 2xx without the scope it needs (the Open Inference Protocol's
``/v2`` routes included)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck
from hypothesis import strategies as st
from schemathesis.core.result import Ok
from schemathesis.generation.modes import GenerationMode
from starlette.routing import Route

from driftloop.serving import ApiKeyStore, Scope
from reliability.conftest import ServedSystem
from reliability.project import MODEL, ReliabilityProject

PUBLIC = {
    "/healthz",
    "/readyz",
    "/readyz/{name}",
    "/metrics",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/openapi.json",
    "/login",
    "/logout",
    "/dashboard/static/{path:path}",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/{name}/ready",
}
"""Answer without a key: probes, metrics, API docs, the login form (and logout, which only
clears a cookie), the dashboard's static assets."""

PREDICT_SCOPE = {
    ("POST", "/v1/models/{name}/predict"),
    ("POST", "/v1/models/{name}/feedback"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{name}"),
    ("POST", "/v2/models/{name}/infer"),
    ("GET", "/v2/models/{name}"),
}
"""What a ``predict`` key may do; every other ``/v1`` operation needs ``admin``."""

NARROW_SCOPES = {
    Scope.LABEL: {("POST", "/v1/models/{name}/feedback")},
    Scope.INSIGHTS: {("POST", "/v1/insights"), ("POST", "/v1/models/{name}/predictions")},
    Scope.REGISTER: {
        ("POST", "/v1/models/{name}/versions"),
        ("GET", "/v1/models/{name}/training-data"),
    },
    Scope.DASHBOARD: set(),
}
"""The operations each narrow scope may call (the dashboard's pages are not in the schema)."""

SIGNED = {("POST", "/v1/hooks/alert")}
"""Authenticated by an HMAC signature (``hooks.secret``), not by an API key."""

CAPABILITY = {("GET", "/v1/graphs/{graph_id}.png")}
"""Public by design: 128-bit random ids, linked from Slack messages (guessing answers 404)."""

OBSERVED: dict[str, dict[int, int]] = {}


def template(path: str) -> str:
    """The route a schema path belongs to: the document also lists each served model's own
    ``/v1/models/<name>/predict`` (with the inputs that model takes)."""
    return re.sub(r"^/v1/models/[^/{}]+", "/v1/models/{name}", path)


EXAMPLES = 25
EARLY_422: list[str] = []


def _without_keys(headers: dict[str, Any] | None) -> dict[str, Any]:
    return {
        k: v for k, v in (headers or {}).items() if k.lower() not in {"authorization", "x-api-key"}
    }


def early_json_error(response: Any) -> bool:
    """FastAPI decodes a body it validates itself (``POST /v1/models/{name}/retrain``) before
    it runs the endpoint's dependencies, the key check among them: bytes that are not JSON get
    422 (400 when not parseable at all) whatever the key. Nothing runs and nothing is revealed,
    so it is not access; it is counted apart."""
    if (response.status_code == 422 and "JSON decode error" in response.text) or (
        response.status_code == 400 and "error parsing the body" in response.text
    ):
        EARLY_422.append(response.request.url)
        return True
    return False


def check_case(case: Any, project: ReliabilityProject, session: requests.Session) -> None:
    """Call one generated case four ways and check the answers."""
    operation = (case.method.upper(), template(case.operation.path))
    case.headers = _without_keys(case.headers)
    anonymous = case.call(session=session, timeout=30)
    predict = case.call(session=session, headers=project.headers(), timeout=30)
    admin = case.call(session=session, headers=project.headers(admin=True), timeout=30)
    wrong = case.call(
        session=session, timeout=30, headers={"Authorization": "Bearer dl_0000abcd_" + "x" * 43}
    )
    for name, response in (
        ("no key", anonymous),
        ("predict key", predict),
        ("admin key", admin),
        ("unknown key", wrong),
    ):
        counts = OBSERVED.setdefault(name, {})
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
        assert response.status_code < 500, (
            f"{operation} with {name}: {response.status_code} {response.text[:300]}"
        )
    if operation[1] in PUBLIC:
        return
    if operation in SIGNED:
        assert anonymous.status_code in {401, 413}, anonymous.text
        return
    if operation in CAPABILITY:
        assert anonymous.status_code in {404, 422}, anonymous.text
        return
    if early_json_error(anonymous):
        assert early_json_error(wrong)
        assert early_json_error(predict)
        return
    assert anonymous.status_code == 401, (operation, anonymous.status_code, anonymous.text)
    assert anonymous.headers.get("www-authenticate") == ["Bearer"]
    assert wrong.status_code == 401, (operation, wrong.status_code, wrong.text)
    if operation not in PREDICT_SCOPE:
        assert predict.status_code == 403, (operation, predict.status_code, predict.text)


def strategy(operation: Any) -> st.SearchStrategy[Any]:
    """Valid cases, invalid ones (schemathesis' negative mode), and valid ones on the real model
    (so the calls reach past "unknown model")."""
    choices = [
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    ]
    if "{name}" in operation.path:
        choices.append(
            operation.as_strategy(GenerationMode.POSITIVE, path_parameters={"name": MODEL})
        )
    return st.one_of(choices)


@pytest.mark.slow
def test_no_server_error_and_no_access_without_scope(served_system: ServedSystem) -> None:
    spec = httpx.get(f"{served_system.url}/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(spec)
    schema.config.update(base_url=served_system.url)
    session = requests.Session()
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert len(operations) >= 20
    for operation in operations:

        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @hypothesis.given(case=strategy(operation))
        def fuzz(case: Any) -> None:
            check_case(case, served_system.project, session)

        fuzz()
    calls = sum(sum(counts.values()) for counts in OBSERVED.values())
    print(
        f"schemathesis: {len(operations)} operations, {calls} calls, statuses {OBSERVED}, "
        f"422 before the key check: {len(EARLY_422)}"
    )
    assert calls >= 4 * len(operations)


def all_routes(routes: Sequence[Any], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """Every (path, methods) of an app, through included routers (FastAPI >= 0.16x keeps them
    nested; older versions flatten them)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            yield from all_routes(inner.routes, prefix + getattr(context, "prefix", ""))
        elif isinstance(route, APIRoute | Route):
            yield prefix + route.path, set(route.methods or ())


def test_every_route_outside_the_schema_needs_a_session_or_is_public(
    served_system: ServedSystem,
) -> None:
    """Routes the OpenAPI document leaves out (dashboard pages and its JSON API): without a
    session, pages redirect to /login and JSON answers 401."""
    app_routes = httpx.get(f"{served_system.url}/openapi.json", timeout=10).json()["paths"]
    checked = 0
    for path, methods in all_routes(served_system.system.create_app(poll=False).routes):
        if path in app_routes or path in PUBLIC:
            continue
        concrete = re.sub(r"\{[^}]+\}", "review-classifier", path)
        for method in sorted(methods - {"HEAD"}):
            response = httpx.request(
                method, served_system.url + concrete, timeout=10, follow_redirects=False
            )
            checked += 1
            assert response.status_code in {303, 401}, (method, path, response.status_code)
            if response.status_code == 303:
                assert response.headers["location"].startswith("/login")
    assert checked >= 4  # "/", "/dashboard", the dashboard's JSON API


def test_public_endpoints_answer_without_a_key(served_system: ServedSystem) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/login"):
        response = httpx.get(served_system.url + path, timeout=10)
        assert response.status_code == 200, (path, response.status_code)


def test_narrow_keys_reach_only_their_own_endpoint(served_system: ServedSystem) -> None:
    """A ``label``, ``insights`` or ``dashboard`` key on every operation of the schema: 403
    everywhere but its own operation, which lets it past the key check (an empty body is then
    422). One call per operation and scope: the fuzz above checks the predict and admin keys."""
    spec = httpx.get(f"{served_system.url}/openapi.json", timeout=10).json()
    store = ApiKeyStore(served_system.system.database)
    operations = [
        (method.upper(), template(path))
        for path, methods in spec["paths"].items()
        if path not in PUBLIC
        for method in methods
    ]
    assert len(operations) >= 20
    with httpx.Client(base_url=served_system.url, timeout=10) as client:
        for scope, allowed in NARROW_SCOPES.items():
            key = {"Authorization": f"Bearer {store.create(scope).key}"}
            for operation in operations:
                method, path = operation
                concrete = re.sub(r"\{[^}]+\}", "x", path.replace("{name}", MODEL))
                response = client.request(
                    method, concrete, headers=key, json={} if method == "POST" else None
                )
                if operation in SIGNED or operation in CAPABILITY:
                    assert response.status_code in {401, 404}, (scope, operation, response.text)
                elif operation in allowed and method == "GET":  # the training rows
                    assert response.status_code == 200, (scope, operation, response.text)
                elif operation in allowed:
                    assert response.status_code == 422, (scope, operation, response.text)
                else:
                    assert response.status_code == 403, (scope, operation, response.text)
                    assert f"scope {scope.value!r}" in response.text, response.text
