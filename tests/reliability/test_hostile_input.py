"""Hostile input, sent over a real socket to the whole loop's app, and to the CLI and library:
oversized, deeply nested, non-UTF-8, wrong-type and huge-number payloads; path traversal in model
and dataset names; template injection in monitor messages. Each is refused with the documented
status and a JSON error that says what is wrong, and the server keeps serving."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
import yaml
from standardwebhooks.webhooks import Webhook

from driftloop.config import load_config
from driftloop.errors import ConfigError, InvalidInputError
from driftloop.messages import MessageTemplate
from driftloop.objectstore import DatasetStore
from driftloop.serving import ApiKeyStore, Scope
from driftloop.system import DriftloopSystem
from reliability.conftest import HOOK_SECRET, ServedSystem
from reliability.project import DATASET, MODEL

PREDICT = f"/v1/models/{MODEL}/predict"
LIMITED = ("/v1/events", "/v1/incidents", "/v1/jobs", "/v1/monitors/confidence/history")
"""The endpoints that take ``?limit=``."""
DRIFTLOOP = str(Path(sys.executable).parent / "driftloop")


def raw_request(
    url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
) -> tuple[int, dict[str, Any]]:
    """Exactly these bytes on the wire: no client-side path normalisation or encoding."""
    status, document, _ = raw_exchange(url, method, path, body, headers, chunked)
    return status, document


def raw_exchange(
    url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
) -> tuple[int, dict[str, Any], Message]:
    """:func:`raw_request`, with the answer's headers."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if chunked:
            connection.putheader("Transfer-Encoding", "chunked")
        elif body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        if body is not None and chunked:
            for start in range(0, len(body), 65536):
                piece = body[start : start + 65536]
                connection.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            connection.send(b"0\r\n\r\n")
        elif body is not None:
            connection.send(body)
        response = connection.getresponse()
        payload = response.read()
        try:
            document = json.loads(payload) if payload else {}
        except ValueError:
            document = {"raw": payload[:200].decode("utf-8", "replace")}
        return response.status, document, response.headers
    finally:
        connection.close()


@pytest.fixture
def served(served_system: ServedSystem) -> Iterator[ServedSystem]:
    yield served_system
    # after every hostile request the server still answers a normal one
    answer = httpx.post(
        served_system.url + PREDICT,
        json={"text": "great food"},
        headers=served_system.project.headers(),
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def error_of(document: dict[str, Any]) -> tuple[str, str]:
    detail = document["error"]
    return detail["type"], detail["message"]


@pytest.mark.parametrize(
    ("body", "chunked", "status", "kind", "words"),
    [
        (
            b'{"texts": ["' + b"a" * 1_100_000 + b'"]}',
            False,
            413,
            "LimitError",
            "serving.max_body_bytes",
        ),
        (
            b'{"texts": ["' + b"a" * 1_100_000 + b'"]}',
            True,
            413,
            "LimitError",
            "serving.max_body_bytes",
        ),
        (
            json.dumps({"texts": ["x"] * 300}).encode(),
            False,
            413,
            "LimitError",
            "serving.max_texts_per_request",
        ),
        (
            json.dumps({"texts": ["x" * 10_001]}).encode(),
            False,
            422,
            "InvalidTextError",
            "serving.max_text_chars",
        ),
        (
            b'{"texts": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            False,
            422,
            "InvalidInputError",
            "nested too deeply",
        ),
        (
            b'{"texts": ' + b'{"a":' * 20_000 + b"1" + b"}" * 20_000 + b"}",
            False,
            422,
            "InvalidInputError",
            "nested too deeply",
        ),
        (b'{"texts": ["caf\xe9 \xff\xfe"]}', False, 422, "InvalidInputError", "not valid UTF-8"),
        (b'{"texts": ["\\ud800"]}', False, 422, "InvalidInputError", "surrogate"),
        (b'{"texts": "not a list"}', False, 422, "InvalidInputError", "texts"),
        (b'{"texts": [1, 2, 3]}', False, 422, "InvalidInputError", "texts.0"),
        (b'{"text": 12}', False, 422, "InvalidInputError", "text"),
        (b'{"texts": [null]}', False, 422, "InvalidInputError", "texts.0"),
        (b'{"texts": []}', False, 422, "InvalidInputError", "empty"),
        (b'{"texts": ["a"], "text": "b"}', False, 422, "InvalidInputError", "exactly one"),
        (b'{"texts": ["a"], "__proto__": {}}', False, 422, "InvalidInputError", "unknown field"),
        (b'["a", "b"]', False, 422, "InvalidInputError", "expected a JSON object"),
        (b"null", False, 422, "InvalidInputError", "expected a JSON object"),
        (b"1e999999", False, 422, "InvalidInputError", "expected a JSON object"),
        (b'{"texts": ["a"', False, 422, "InvalidInputError", "malformed JSON"),
        (b"   ", False, 422, "InvalidInputError", "empty"),
    ],
    ids=[
        "oversized",
        "oversized-chunked",
        "too-many-texts",
        "text-too-long",
        "nested-lists",
        "nested-objects",
        "latin-1-bytes",
        "lone-surrogate",
        "texts-string",
        "texts-numbers",
        "text-number",
        "texts-null",
        "texts-empty",
        "both-fields",
        "unknown-field",
        "array-body",
        "null-body",
        "huge-number-body",
        "truncated",
        "blank",
    ],
)
def test_bad_predict_bodies_are_refused(
    served: ServedSystem, body: bytes, chunked: bool, status: int, kind: str, words: str
) -> None:
    headers = {**served.project.headers(), "Content-Type": "application/json"}
    got, document = raw_request(served.url, "POST", PREDICT, body, headers, chunked=chunked)
    assert got == status, document
    found_kind, message = error_of(document)
    assert found_kind == kind
    assert words in message or words in str(document["error"].get("limit")), message


@pytest.mark.parametrize(
    "body",
    [
        b'{"version": 1e309}',
        b'{"version": 99999999999999999999999999999999}',
        b'{"version": -1}',
        b'{"version": "2"}',
        b'{"version": true}',
        b'{"version": NaN}',
        b'{"version": 2.0}',
        b"{}",
    ],
)
def test_bad_deploy_bodies_are_refused_without_changing_production(
    served: ServedSystem, body: bytes
) -> None:
    before = served.project.registry.aliases(MODEL)
    headers = {**served.project.headers(admin=True), "Content-Type": "application/json"}
    status, document = raw_request(served.url, "POST", f"/v1/models/{MODEL}/deploy", body, headers)
    assert status == 422, document
    assert error_of(document)[0] == "InvalidInputError"
    assert served.project.registry.aliases(MODEL) == before


ODD_QUERIES = [
    ("limit=99999999999999999999999", LIMITED),
    ("limit=-1", LIMITED),
    ("limit=1e400", LIMITED),
    ("limit=%00", LIMITED),
    ("limit=", LIMITED),
    ("since=1e999", ("/v1/events",)),
    ("since=-1e999", ("/v1/events",)),
    ("since=nan", ("/v1/events",)),
    ("since=%00", ("/v1/events",)),
]


@pytest.mark.parametrize(("query", "paths"), ODD_QUERIES, ids=[q for q, _ in ODD_QUERIES])
def test_huge_and_odd_numbers_in_queries_are_refused(
    served: ServedSystem, query: str, paths: tuple[str, ...]
) -> None:
    """Each endpoint that takes the parameter answers 422 naming it (an ignored parameter of
    an endpoint that does not take it proves nothing)."""
    headers = served.project.headers(admin=True)
    name = query.partition("=")[0]
    for path in paths:
        status, document = raw_request(served.url, "GET", f"{path}?{query}", None, headers)
        assert status == 422, (path, query, status, document)
        assert name in json.dumps(document), document


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/../etc/passwd/predict",
        "/v1/models/..%2F..%2Fetc%2Fpasswd/predict",
        "/v1/models/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/v1/models/..%252Fetc%252Fpasswd",
        "/v1/models/%2e%2e/deploy",
        "/v1/models/review-classifier%00/predict",
    ],
)
def test_path_traversal_in_model_names_finds_nothing(served: ServedSystem, path: str) -> None:
    headers = {**served.project.headers(admin=True), "Content-Type": "application/json"}
    method = "GET" if path.count("/") == 3 else "POST"
    body = b'{"version": 1}' if path.endswith("deploy") else b'{"text": "x"}'
    status, document = raw_request(
        served.url, method, path, body if method == "POST" else None, headers
    )
    assert status == 404, (path, status, document)
    assert "root:x:" not in json.dumps(document)


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/static/../../../../etc/passwd",
        "/dashboard/static/..%2F..%2F..%2Fetc%2Fpasswd",
        "/dashboard/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/dashboard/static/..%5c..%5cetc%5cpasswd",
        "/v1/graphs/..%2F..%2Fetc%2Fpasswd.png",
    ],
)
def test_path_traversal_in_public_file_routes_serves_no_file(
    served: ServedSystem, path: str
) -> None:
    status, document = raw_request(served.url, "GET", path)
    assert status == 404, (path, status, document)
    assert "root:x:" not in json.dumps(document)


@pytest.mark.parametrize(
    "name", ["../etc/passwd", "..%2Fx", "/abs", "a/../../b", "UPPER", "x" * 300, ""]
)
def test_path_traversal_in_model_names_is_refused_by_the_registry(
    served: ServedSystem, tmp_path: Path, name: str
) -> None:
    model_dir = tmp_path / "model"
    served.project.registry.load_predictor(served.project.versions[0]).save(model_dir)
    before = served.project.registry.list_models()
    with pytest.raises(InvalidInputError, match="must match"):
        served.project.registry.register(name, model_dir, trainer="sklearn")
    assert served.project.registry.list_models() == before


@pytest.mark.parametrize("dataset", ["../x", "..%2Fx", "/etc"])
def test_path_traversal_in_dataset_names_is_refused_by_the_cli(
    served: ServedSystem, tmp_path: Path, dataset: str
) -> None:
    csv = tmp_path / "rows.csv"
    csv.write_text("text,label\nfine,a\nbad,b\n")
    storage_root = served.project.directory / ".driftloop" / "storage"
    before = sorted(p for p in storage_root.parent.rglob("*"))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLOOP_")}
    result = subprocess.run(
        [
            DRIFTLOOP,
            "data",
            "push",
            str(csv),
            "--dataset",
            dataset,
            "--config",
            str(served.project.directory / "driftloop.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "must match" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    after = sorted(p for p in storage_root.parent.rglob("*"))
    assert [p for p in after if p not in before and "outbox" not in str(p)] == []
    assert not (served.project.directory / ".driftloop" / "x").exists()
    assert served.project.datasets.datasets() == [DATASET]


def test_dataset_names_are_refused_by_the_library(served: ServedSystem) -> None:
    store: DatasetStore = served.project.datasets
    for name in ("../x", "a/../../b", "/etc/passwd"):
        with pytest.raises(InvalidInputError, match="must match"):
            store.push(Path("/etc/hostname"), name)
        with pytest.raises(InvalidInputError, match="must match"):
            store.list(name)


def monitor_config(directory: Path, message: str) -> Path:
    document = {
        "models": {MODEL: {"trainer": "sklearn", "data": DATASET}},
        "monitors": [
            {
                "name": "confidence",
                "metric": "model_confidence",
                "window": "5m",
                "below": {"warning": 0.5, "critical": 0.4},
                "message": message,
            }
        ],
    }
    path = directory / "driftloop.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize(
    ("message", "words"),
    [
        ("{{#is_alert}}{{{{value}}}}", "never closed"),
        ("{{/is_alert}} @retrain", "never opened"),
        ("{{#is_alert}}{{/is_warning}}", "closes 'is_alert'"),
    ],
)
def test_broken_monitor_templates_are_refused_at_config_load(
    tmp_path: Path, message: str, words: str
) -> None:
    with pytest.raises(ConfigError, match=words):
        load_config(monitor_config(tmp_path, message), environ={})
    result = subprocess.run(
        [DRIFTLOOP, "config", "check", str(tmp_path / "driftloop.yaml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "monitors.0" in result.stderr + result.stdout


def test_template_injection_renders_nothing_but_text(tmp_path: Path) -> None:
    """Dunder names are plain variables (no attribute access); values holding ``{{`` are
    inserted as text, never parsed, so they cannot open sections or add @mentions."""
    message = (
        "{{__class__}}{{__class__.__mro__}}{{value}} on {{model}} "
        "{{#is_alert}}@retrain{{/is_alert}}"
    )
    config = load_config(monitor_config(tmp_path, message), environ={})
    system = DriftloopSystem(config)  # the engine parses every message at start
    assert [m.name for m in system.config.monitors] == ["confidence"]
    template = MessageTemplate(message)
    hostile = "{{#is_alert}}@oncall {{{{value}}}} {{__import__('os')}}{{/is_alert}}"
    rendered = template.render(
        {"value": hostile, "model": "{{#is_ok}}@jira{{/is_ok}}"}, {"is_alert": False, "is_ok": True}
    )
    assert rendered.text == f"{hostile} on {{{{#is_ok}}}}@jira{{{{/is_ok}}}}"
    assert rendered.handles == ()
    alert = template.render({"value": "{{", "__class__": "<class>"}, {"is_alert": True})
    assert alert.text == "<class>{{ on  @retrain"
    assert alert.handles == ("retrain",)


# --- feedback (issue #22 part 7): labels, item counts, relabelling, texts ---------------------

FEEDBACK = f"/v1/models/{MODEL}/feedback"


def predicted(served: ServedSystem, *texts: str) -> list[dict[str, Any]]:
    response = httpx.post(
        served.url + PREDICT,
        json={"texts": list(texts)},
        headers=served.project.headers(),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    answers: list[dict[str, Any]] = response.json()["predictions"]
    return answers


def post_feedback(served: ServedSystem, items: list[dict[str, Any]]) -> tuple[int, Any]:
    body = json.dumps({"feedback": items}).encode()
    headers = {**served.project.headers(), "Content-Type": "application/json"}
    return raw_request(served.url, "POST", FEEDBACK, body, headers)


def correct_points(served: ServedSystem) -> int:
    """``prediction_correct`` points in the metric store, once the insights are written."""
    assert served.system.insights.flush()
    results = served.system.metric_store.query("prediction_correct", "count", 0.0, 4e9)
    return int(sum(result.value or 0 for result in results))


def feedback_rows(served: ServedSystem) -> int:
    return len(served.system.feedback.list(MODEL, limit=100_000))


def test_feedback_labels_outside_the_models_classes_are_refused(served: ServedSystem) -> None:
    """Labels were free text, each a new metric series: the probe made 58k of them."""
    [answer] = predicted(served, "great food")
    before = (correct_points(served), feedback_rows(served))
    status, document = post_feedback(
        served, [{"prediction_id": answer["id"], "label": f"made-up-{i}"} for i in range(50)]
    )
    assert status == 422, document
    kind, message = error_of(document)
    assert kind == "InvalidInputError"
    assert "feedback item 0's label 'made-up-0'" in message
    assert "and 45 more are not one of the model's classes" in message
    assert (correct_points(served), feedback_rows(served)) == before


def test_feedback_with_more_items_than_the_cap_is_refused(served: ServedSystem) -> None:
    """The probe's 3,000 items without text per request (there was no limit but the body)."""
    before = feedback_rows(served)
    status, document = post_feedback(
        served, [{"prediction_id": f"p{i}", "label": "x"} for i in range(3000)]
    )
    assert status == 413, document
    assert document["error"]["limit"] == "serving.max_feedback_items"
    assert feedback_rows(served) == before


def test_relabelling_one_prediction_adds_no_rows_and_no_points(served: ServedSystem) -> None:
    """One prediction id could be labelled without end, a row and a point each time."""
    [answer] = predicted(served, "great food")
    label = answer["class"]
    points, rows = correct_points(served), feedback_rows(served)
    for attempt in range(20):
        status, document = post_feedback(
            served, [{"prediction_id": answer["id"], "label": label}] * 3
        )
        assert status == 200, document
        assert document == {"accepted": 3, "matched": 3, "relabelled": 3 if attempt else 2}
    assert feedback_rows(served) == rows + 1
    assert correct_points(served) == points + 1


def test_feedback_texts_for_predictions_never_issued_or_not_scored_are_refused(
    served: ServedSystem,
) -> None:
    """With ``merge_feedback``, any predict key could add training rows for ids the server
    never issued, with texts it never scored."""
    [answer] = predicted(served, "great food")
    samples = served.system.feedback.labeled_samples(MODEL)
    for prediction_id, text in (
        (answer["id"], "terrible food"),
        ("f" * 32, "great food"),
        ("never-issued", "great food"),
    ):
        status, document = post_feedback(
            served, [{"prediction_id": prediction_id, "label": answer["class"], "text": text}]
        )
        assert status == 422, document
        assert "feedback item 0's text" in error_of(document)[1]
    assert served.system.feedback.labeled_samples(MODEL) == samples
    status, document = post_feedback(
        served, [{"prediction_id": answer["id"], "label": answer["class"], "text": "great food"}]
    )
    assert status == 200, document
    assert len(served.system.feedback.labeled_samples(MODEL)) == len(samples) + 1


INSIGHTS = "/v1/insights"


@pytest.mark.parametrize(
    ("body", "chunked", "status", "words"),
    [
        (
            b'{"points": [{"name": "x", "value": 1, "tags": {"t": "' + b"a" * 1_100_000 + b'"}}]}',
            True,
            413,
            "serving.max_body_bytes",
        ),
        (
            json.dumps({"points": [{"name": "x", "value": 1}] * 6_000}).encode(),
            False,
            413,
            "serving.max_insight_points",
        ),
        (b'{"points": [{"name": "x", "value": 1e999}]}', False, 422, "finite"),
        (b'{"points": [{"name": "x", "value": NaN}]}', False, 422, "finite"),
        (b'{"points": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", False, 422, "nested too deeply"),
        (b'{"points": [{"name": "x", "value": 1, "timestamp": 1e300}]}', False, 422, "future"),
        (
            b'{"points": [{"name": "x", "value": 1, "tags": {"model": null}}]}',
            False,
            422,
            "points.0.tags.model",
        ),
    ],
    ids=[
        "oversized-chunked",
        "too-many-points",
        "infinite",
        "nan",
        "nested",
        "far-future",
        "null-tag",
    ],
)
def test_bad_insight_bodies_are_refused(
    served: ServedSystem, body: bytes, chunked: bool, status: int, words: str
) -> None:
    headers = {**served.project.headers(admin=True), "Content-Type": "application/json"}
    got, document = raw_request(served.url, "POST", INSIGHTS, body, headers, chunked=chunked)
    assert got == status, document
    _, message = error_of(document)
    assert words in message or words in str(document["error"].get("limit")), message


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"points": "many"}', "points"),
        (b'{"points": [{"name": 5, "value": 1}]}', "points.0.name"),
        (b'{"points": [{"name": "x", "value": "high"}]}', "points.0.value"),
        (b'{"points": [{"name": "x", "value": true}]}', "points.0.value"),
        (b'{"points": [{"name": "x", "value": 1, "tags": ["model"]}]}', "points.0.tags"),
        (b'{"points": [{"name": "x", "value": 1, "tags": {"model": 7}}]}', "points.0.tags.model"),
        (b'{"points": [{"name": "x", "value": 1, "timestamp": "soon"}]}', "points.0.timestamp"),
        (b"[1, 2]", "expected a JSON object"),
    ],
    ids=["not-a-list", "name", "value-text", "value-bool", "tags-list", "tag-int", "time", "list"],
)
def test_insight_points_of_the_wrong_type_are_refused_naming_the_field(
    served: ServedSystem, body: bytes, words: str
) -> None:
    """``POST /v1/insights`` (#19 parts 1, 8): each wrong type is a 422 naming its field."""
    headers = {**served.project.headers(admin=True), "Content-Type": "application/json"}
    got, document = raw_request(served.url, "POST", INSIGHTS, body, headers)
    assert got == 422, (words, document)
    assert words in said(document), (words, document)


def test_insights_take_only_an_insights_or_admin_key(served: ServedSystem) -> None:
    """A predict or label key is refused (403), no key or a made-up one too (401), and
    nothing they sent is accepted; an insights key's same body is (202)."""
    body = json.dumps({"points": [{"name": "scope_probe", "value": 1.0}]}).encode()
    keys = served.system.api_keys
    cases = {
        "predict": (served.project.predict_key, 403),
        "label": (keys.create(Scope.LABEL, name="hostile-label").key, 403),
        "made-up": ("dl_" + "0" * 40, 401),
        "insights": (keys.create(Scope.INSIGHTS, name="hostile-insights").key, 202),
    }
    for name, (key, status) in cases.items():
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        got, document = raw_request(served.url, "POST", INSIGHTS, body, headers)
        assert got == status, (name, document)
    got, document = raw_request(
        served.url, "POST", INSIGHTS, body, {"Content-Type": "application/json"}
    )
    assert got == 401, document


LOGGED = f"/v1/models/{MODEL}/predictions"


def test_bad_logged_predictions_are_refused(served: ServedSystem) -> None:
    """``POST /v1/models/{name}/predictions`` (#19 part 2): oversize, too many, wrong types,
    non-finite numbers, far-future times, an id shaped like a served one, an unknown model and
    a key of another scope, each refused with its own status and words."""
    one = {"id": "ext-1", "class": "x", "confidence": 0.5}
    insights_key = served.system.api_keys.create(Scope.INSIGHTS, name="hostile").key
    cases: list[tuple[str, bytes, bool, int, str]] = [
        (
            LOGGED,
            b'{"version": 1, "predictions": [{"id": "' + b"a" * 1_100_000 + b'"}]}',
            True,
            413,
            "serving.max_body_bytes",
        ),
        (
            LOGGED,
            json.dumps({"version": 1, "predictions": [one] * 300}).encode(),
            False,
            413,
            "serving.max_texts_per_request",
        ),
        (
            LOGGED,
            b'{"version": 1, "predictions": [{"id": "a", "value": NaN}]}',
            False,
            422,
            "finite",
        ),
        (
            LOGGED,
            b'{"version": 1, "predictions": [{"id": 5, "class": "x"}]}',
            False,
            422,
            "predictions.0.id",
        ),
        (
            LOGGED,
            b'{"version": 1.5, "predictions": [{"id": "a", "class": "x"}]}',
            False,
            422,
            "version",
        ),
        (
            LOGGED,
            b'{"version": 1, "predictions": [{"id": "a", "value": 1, "timestamp": 1e300}]}',
            False,
            422,
            "timestamp",
        ),
        (
            LOGGED,
            b'{"version": 1, "predictions": [{"id": "' + b"0" * 32 + b'", "value": 1}]}',
            False,
            422,
            "ids this server issues",
        ),
        (
            LOGGED,
            b'{"version": 1, "predictions": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            False,
            422,
            "nested too deeply",
        ),
        (
            "/v1/models/nope/predictions",
            b'{"version": 1, "predictions": [{"id": "a"}]}',
            False,
            404,
            "nope",
        ),
    ]
    for path, body, chunked, status, words in cases:
        headers = {"Authorization": f"Bearer {insights_key}", "Content-Type": "application/json"}
        got, document = raw_request(served.url, "POST", path, body, headers, chunked=chunked)
        assert got == status, (words, document)
        assert words in said(document), (words, document)
    predict_only = {**served.project.headers(), "Content-Type": "application/json"}
    got, document = raw_request(
        served.url,
        "POST",
        LOGGED,
        json.dumps({"version": 1, "predictions": [one]}).encode(),
        predict_only,
    )
    assert got == 403, document


# --- endpoints added since (#22 part 8): numbers, readiness, login, hooks, rate limits ---------


def said(document: dict[str, Any]) -> str:
    """What an error answer says, whatever its JSON shape (``{"error": {"type", "message",
    "limit"}}`` or ``{"error": ..., "detail": ...}``), so a test holds only if it names the
    problem."""
    error = document.get("error")
    parts = list(error.values()) if isinstance(error, dict) else [error]
    return " ".join(str(part) for part in [*parts, document.get("detail")] if part)


HUGE_NUMBER = b"1" * 5_000
"""Past Python's 4,300 digits, where int() of the JSON text raises a ValueError (it answered
500 with a traceback)."""


def test_json_numbers_past_4300_digits_are_refused(served: ServedSystem) -> None:
    for path, body in (
        (PREDICT, b'{"text": ' + HUGE_NUMBER + b"}"),
        (FEEDBACK, b'{"feedback": [{"prediction_id": ' + HUGE_NUMBER + b', "label": "x"}]}'),
        (INSIGHTS, b'{"points": [{"name": "x", "value": ' + HUGE_NUMBER + b"}]}"),
        (f"/v1/models/{MODEL}/deploy", b'{"version": ' + HUGE_NUMBER + b"}"),
        (f"/v1/models/{MODEL}/retrain", b'{"reason": ' + HUGE_NUMBER + b"}"),
    ):
        headers = {**served.project.headers(admin=True), "Content-Type": "application/json"}
        status, document = raw_request(served.url, "POST", path, body, headers)
        assert status in {400, 422}, (path, status, document)
        assert "digits" in said(document) or "parsing the body" in said(document), document


def test_odd_chart_point_counts_are_refused(served: ServedSystem) -> None:
    """A Unicode digit passed ``str.isdigit`` and answered 500 from ``int()``."""
    for points in ("²", "٣", "1" * 5_000, "-1", "1e3"):
        status, document = raw_request(
            served.url,
            "GET",
            f"/dashboard/api/models/{MODEL}?points={quote(points)}",
            None,
            served.project.headers(admin=True),
        )
        assert status == 422, (points, status, document)
        assert "points" in said(document), document


def test_an_odd_version_tag_in_insights_breaks_no_reader(served: ServedSystem) -> None:
    """Any ``insights`` key may tag a point with ``version: "²"``: the dashboard (which sorts
    versions) and the drift monitors (which look up the version's reference) read it."""
    headers = {**served.project.headers(admin=True), "Content-Type": "application/json"}
    point = {
        "name": "model_confidence",
        "value": 0.9,
        "tags": {"model": MODEL, "version": "²", "class": "Food - Positive"},
    }
    status, document = raw_request(
        served.url, "POST", INSIGHTS, json.dumps({"points": [point]}).encode(), headers
    )
    assert status == 202, document
    assert served.system.insights.flush()
    assert served.system.reference_for({"model": MODEL, "version": "²"}) is not None
    for path in ("/dashboard/api/models", f"/dashboard/api/models/{MODEL}"):
        status, document = raw_request(served.url, "GET", path, None, headers)
        assert status == 200, (path, status, document)


INFER = f"/v2/models/{MODEL}/infer"


def v2_text(data: Any = None, **tensor: Any) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "shape": [1],
                    "datatype": "BYTES",
                    **({"data": data} if data is not None else {}),
                    **tensor,
                }
            ]
        }
    ).encode()


def test_hostile_open_inference_requests_are_refused(served: ServedSystem) -> None:
    """The /v2 routes (#18 part 3): each refused with the protocol's ``{"error": "..."}``."""
    binary = v2_text(parameters={"binary_data_size": 9})
    for body, extra, status, words in (
        (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", {}, 422, "nested too deeply"),
        (b'{"inputs": ' + HUGE_NUMBER + b"}", {}, 422, "digits"),
        (b'{"id": "\xff\xfe"}', {}, 422, "UTF-8"),
        (v2_text(["\ud800"]), {}, 422, "surrogate"),
        (v2_text(["x" * 10_001]), {}, 422, "serving.max_text_chars"),
        (v2_text(["a"] * 300, shape=[300]), {}, 413, "serving.max_texts_per_request"),
        (v2_text(["a"], shape=[10**30]), {}, 422, "for shape"),
        (v2_text([[["a"]]]), {}, 422, "expected a string"),
        (
            binary + b"\xff\xff\xff\x7fabcde",
            {"Inference-Header-Content-Length": str(len(binary))},
            422,
            "truncated",
        ),
        (binary, {"Inference-Header-Content-Length": str(len(binary) + 5)}, 422, "length"),
        (binary, {"Inference-Header-Content-Length": "-1"}, 422, "length"),
        (binary, {}, 422, "binary"),
    ):
        headers = {**served.project.headers(), "Content-Type": "application/json", **extra}
        got, document = raw_request(served.url, "POST", INFER, body, headers)
        assert got == status, (body[:80], got, document)
        assert isinstance(document["error"], str), document
        assert words in document["error"] + str(document.get("limit")), document
    for path in ("/v2/models/..%2F..%2Fetc%2Fpasswd/infer", "/v2/models/%00/ready"):
        status, document = raw_request(
            served.url,
            "GET" if path.endswith("ready") else "POST",
            path,
            v2_text(["a"]),
            served.project.headers(),
        )
        assert status in {404, 405}, (path, status, document)
        assert "root:x:" not in json.dumps(document)
    status, document = raw_request(served.url, "POST", INFER, v2_text(["a"]))
    assert status == 401, document
    assert "missing API key" in document["error"], document


def test_readiness_of_an_unknown_model_is_404_and_names_no_path(served: ServedSystem) -> None:
    status, document = raw_request(served.url, "GET", f"/readyz/{MODEL}")
    assert (status, document) == (200, {"model": MODEL, "ready": True, "version": 1})
    storage = str(served.project.directory)
    for name in ("nothing", "..%2F..%2Fetc%2Fpasswd", "%00", "x" * 4_000, f"{MODEL}%20"):
        status, document = raw_request(served.url, "GET", f"/readyz/{name}")
        assert status == 404, (name, status, document)
        assert storage not in json.dumps(document)
        assert "root:x:" not in json.dumps(document)


def login(served: ServedSystem, body: bytes, **headers: str) -> tuple[int, dict[str, Any]]:
    return raw_request(
        served.url,
        "POST",
        "/login",
        body,
        {"Content-Type": "application/x-www-form-urlencoded", **headers},
    )


def test_hostile_logins_are_refused(served: ServedSystem) -> None:
    """The login form answers HTML; each refusal has its status, and no session cookie."""
    label = ApiKeyStore(served.system.database).create(Scope.LABEL).key
    for body, headers, status in (
        (b"key=" + b"k" * 9_000, {}, 413),
        (b"key=\xff\xfe%ff", {}, 401),
        (b"key=" + served.project.predict_key.encode(), {}, 403),
        (b"key=" + label.encode(), {}, 403),
        (b"key=dl_0000abcd_" + b"x" * 43, {}, 401),
        (b"next=/&next=//evil.example", {}, 401),
        (b"key=" + served.project.admin_key.encode(), {"Origin": "https://evil.example"}, 403),
        (b"key=" + served.project.admin_key.encode(), {"Sec-Fetch-Site": "cross-site"}, 403),
    ):
        got, document = login(served, body, **headers)
        assert got == status, (body[:40], headers, got, document)
    got, document = raw_request(
        served.url,
        "POST",
        "/login",
        b"k" * 2_000_000,
        {"Content-Type": "application/x-www-form-urlencoded"},
        chunked=True,
    )
    assert got == 413, document
    assert "serving.max_body_bytes" in said(document)


def test_hostile_logouts_end_nothing_and_answer_no_error(served: ServedSystem) -> None:
    for headers, status in (
        ({"Cookie": "driftloop_session=forged.value"}, 303),
        ({"Cookie": "driftloop_session=" + "x" * 4_000}, 303),
        ({"Origin": "https://evil.example"}, 403),
    ):
        got, document = raw_request(served.url, "POST", "/logout", b"", headers)
        assert got == status, (headers, got, document)


def signed_hook(body: bytes, *, message_id: str | None = None) -> dict[str, str]:
    now = datetime.now(UTC)
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(HOOK_SECRET).sign(message_id, now, body.decode()),
    }


def test_bad_signed_hook_bodies_are_refused(served: ServedSystem) -> None:
    """Signed, so past the signature check: the body itself is refused, 422 saying why."""
    jobs = len(served.system.queue.list())
    for body, words in (
        (b"not json", "not JSON"),
        (b'{"alerts": ' + HUGE_NUMBER + b"}", "digits"),
        (b'{"version": "4", "alerts": [1, 2]}', "alert"),
        (b"[]", "JSON object"),
        (b"{}", "Alertmanager"),
    ):
        status, document = raw_request(
            served.url, "POST", "/v1/hooks/alert", body, signed_hook(body)
        )
        assert status == 422, (body[:40], status, document)
        assert words in said(document), document
    assert len(served.system.queue.list()) == jobs


def test_unsigned_replayed_and_oversized_hooks_are_refused(served: ServedSystem) -> None:
    body = b'{"alerts": []}'
    got, document = raw_request(
        served.url, "POST", "/v1/hooks/alert", body, {"Content-Type": "application/json"}
    )
    assert got == 401, document
    headers = signed_hook(body)
    first, _ = raw_request(served.url, "POST", "/v1/hooks/alert", body, headers)
    assert first != 409
    got, document = raw_request(served.url, "POST", "/v1/hooks/alert", body, headers)
    assert got == 409, document
    assert "already" in said(document), document
    huge = b'{"alerts": [], "x": "' + b"a" * 2_000_000 + b'"}'
    got, document = raw_request(
        served.url, "POST", "/v1/hooks/alert", huge, signed_hook(huge), chunked=True
    )
    assert got == 413, document


def test_a_label_key_past_its_rate_limit_gets_429_with_retry_after(served: ServedSystem) -> None:
    """``serving.rate_limits.label`` (rate 0.2/s, burst 2): the third request at once is
    refused before the endpoint runs, with the seconds until a token is back."""
    label = ApiKeyStore(served.system.database).create(Scope.LABEL).key
    [answer] = predicted(served, "great food")
    body = json.dumps(
        {"feedback": [{"prediction_id": answer["id"], "label": answer["class"]}]}
    ).encode()
    headers = {"Authorization": f"Bearer {label}", "Content-Type": "application/json"}
    answers = [raw_exchange(served.url, "POST", FEEDBACK, body, headers) for _ in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 429], answers
    _, document, refused = answers[2]
    assert "label rate limit" in said(document), document
    assert "RateLimitedError" in said(document), document
    assert 1 <= int(refused["Retry-After"]) <= 5


def test_a_past_stall_of_the_server_sheds_no_lone_request(served: ServedSystem) -> None:
    """The server's event loop really stalls for 3 s (a blocking call on it, as a long garbage
    collection or a paused host would): with no queue of requests behind the stall, the next
    predict request is read at once and answered 200, not shed as an overload (a first
    version shed it on the loop's lag alone; shedding under a real flood is the soak's test)."""
    predicted(served, "great food")  # the loop's lag monitor runs from the first prediction
    loop = served.server.server.servers[0].get_loop()
    unblocked = threading.Event()

    def stall() -> None:
        time.sleep(3.0)
        unblocked.set()

    loop.call_soon_threadsafe(stall)
    assert unblocked.wait(30)
    time.sleep(0.05)  # the lag monitor has seen the 3 s stall (its figure fades over ~0.3 s)
    body = b'{"text": "great food"}'
    headers = {**served.project.headers(), "Content-Type": "application/json"}
    status, document, _ = raw_exchange(served.url, "POST", PREDICT, body, headers)
    assert status == 200, document
    assert raw_request(served.url, "GET", "/healthz")[0] == 200
