from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook

from driftloop.config import HooksConfig, WebhookSignature
from driftloop.database.core import Database
from driftloop.errors import ConfigError, NotFoundError
from driftloop.metrics.points import SeriesPoint
from driftloop.notify import (
    GraphStore,
    InboundAlert,
    InboundRetrainHandler,
    graph_router,
    inbound_router,
    render_graph,
)
from driftloop.notify.base import ThresholdLines
from driftloop.notify.inbound import HookVerifier, incident_id_for, parse_alert_payload
from driftloop.notify.signatures import ReceiptStore, StandardSigner
from notify.fake_services import notify_config
from serving.mounted import mounted_app

SECRET = "whsec_" + base64.b64encode(b"hook-secret-0123456789-abcdef01").decode()
LEGACY_SECRET = "hook-secret-0123456789"

# Alertmanager's documented webhook body (version 4), as sent for a firing group; the rule
# carries a `model` label.
ALERTMANAGER_PAYLOAD: dict[str, Any] = {
    "receiver": "driftloop",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "ModelConfidenceLow",
                "instance": "serving-1:8000",
                "job": "driftloop",
                "model": "review-classifier",
                "severity": "critical",
            },
            "annotations": {
                "description": "Average confidence of review-classifier below 0.7 for 5m",
                "summary": "Model confidence low: review-classifier",
            },
            "startsAt": "2023-02-06T13:08:45.828Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example.org:9090/graph?g0.expr=avg%28"
            "model_confidence%29+%3C+0.7&g0.tab=1",
            "fingerprint": "1a30ba71cca2921f",
        }
    ],
    "groupLabels": {"alertname": "ModelConfidenceLow"},
    "commonLabels": {
        "alertname": "ModelConfidenceLow",
        "instance": "serving-1:8000",
        "job": "driftloop",
        "model": "review-classifier",
        "severity": "critical",
    },
    "commonAnnotations": {
        "description": "Average confidence of review-classifier below 0.7 for 5m",
        "summary": "Model confidence low: review-classifier",
    },
    "externalURL": "http://alertmanager.example.org:9093",
    "version": "4",
    "groupKey": '{}/{severity="critical"}:{alertname="ModelConfidenceLow"}',
    "truncatedAlerts": 0,
}

# Datadog's default webhook payload (body, last_updated, event_type, title, date, org, id) as
# rendered for a multi-alert monitor grouped by the model tag.
DATADOG_PAYLOAD: dict[str, Any] = {
    "body": "%%%\nConfidence of review-classifier is 0.62\n\n@webhook-driftloop\n%%%",
    "last_updated": "1406662672000",
    "event_type": "query_alert_monitor",
    "title": "[Triggered on {model:review-classifier}] Model confidence low",
    "date": "1406662672000",
    "org": {"id": "123456", "name": "Acme"},
    "id": "7309571256893618153",
}


class RecordingHandler:
    def __init__(self, models: set[str]) -> None:
        self.models = models
        self.alerts: list[InboundAlert] = []

    def __call__(self, alert: InboundAlert) -> str:
        if alert.model not in self.models:
            raise NotFoundError(f"no model {alert.model!r}")
        self.alerts.append(alert)
        return f"inc-{len(self.alerts)}"


def client_for(
    handler: Any,
    database: Database,
    secret: str | None = SECRET,
    *,
    signature: WebhookSignature = "standard",
    tolerance: float = 300.0,
) -> TestClient:
    hooks = HooksConfig(secret=secret, signature=signature, tolerance=tolerance)
    router = inbound_router(HookVerifier(hooks, ReceiptStore(database)), handler)
    return TestClient(mounted_app(database, router))


def signed(
    body: bytes,
    secret: str = SECRET,
    *,
    timestamp: float | None = None,
    message_id: str | None = None,
) -> dict[str, str]:
    """Standard Webhooks headers, as a sender using the reference library makes them."""
    headers = StandardSigner(secret).headers(
        message_id or f"msg_{uuid.uuid4().hex}",
        body,
        timestamp=time.time() if timestamp is None else timestamp,
    )
    return {**headers, "Content-Type": "application/json"}


def legacy_signed(body: bytes, secret: str = LEGACY_SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Driftloop-Signature": f"sha256={digest}", "Content-Type": "application/json"}


def test_alertmanager_payload_with_a_standard_webhooks_signature(database: Database) -> None:
    handler = RecordingHandler({"review-classifier"})
    body = json.dumps(ALERTMANAGER_PAYLOAD).encode()
    response = client_for(handler, database).post(
        "/v1/hooks/alert", content=body, headers=signed(body)
    )
    assert response.status_code == 202, response.text
    assert response.json()["incident_id"] == "inc-1"
    [alert] = handler.alerts
    assert alert.source == "alertmanager"
    assert alert.model == "review-classifier"
    assert alert.status == "firing"
    assert alert.title == "Model confidence low: review-classifier"
    assert alert.labels["severity"] == "critical"
    assert alert.raw["fingerprint"] == "1a30ba71cca2921f"
    assert alert.url is not None
    assert alert.url.startswith("http://prometheus.example.org")


def test_alertmanager_resolved_and_several_alerts() -> None:
    payload = copy.deepcopy(ALERTMANAGER_PAYLOAD)
    second = copy.deepcopy(payload["alerts"][0])
    second["labels"]["model"] = "support-router"
    second["status"] = "resolved"
    payload["alerts"].append(second)
    del payload["commonLabels"]["model"]
    alerts = parse_alert_payload(payload)
    assert [(a.model, a.status) for a in alerts] == [
        ("review-classifier", "firing"),
        ("support-router", "resolved"),
    ]


def test_datadog_default_payload_with_a_bearer_token_in_legacy_mode(database: Database) -> None:
    handler = RecordingHandler({"review-classifier"})
    client = client_for(handler, database, LEGACY_SECRET, signature="legacy")
    response = client.post(
        "/v1/hooks/alert",
        json=DATADOG_PAYLOAD,
        headers={"Authorization": f"Bearer {LEGACY_SECRET}"},
    )
    assert response.status_code == 202, response.text
    [alert] = handler.alerts
    assert (alert.source, alert.model, alert.status) == ("datadog", "review-classifier", "firing")
    assert alert.title == "Model confidence low"
    assert alert.labels == {"model": "review-classifier"}


def test_datadog_custom_payload_recovery_and_tags() -> None:
    payload = {
        "id": "$ID",
        "title": "[Recovered] Model confidence low",
        "alert_transition": "Recovered",
        "alert_cycle_key": "7309571256893618153",
        "tags": "env:prod,model:review-classifier,team:mlops",
    }
    [alert] = parse_alert_payload(payload)
    assert (alert.model, alert.status) == ("review-classifier", "resolved")
    assert alert.labels["team"] == "mlops"
    triggered = parse_alert_payload(
        {**payload, "alert_transition": "Triggered", "title": "[Triggered] Model confidence low"}
    )[0]
    # the same alert cycle maps to the same incident
    assert incident_id_for(triggered) == incident_id_for(alert)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"X-Driftloop-Signature": "sha256=" + "0" * 64},
        {"Authorization": f"Basic {SECRET}"},
    ],
)
def test_missing_or_bad_credentials_are_401(headers: dict[str, str], database: Database) -> None:
    handler = RecordingHandler({"review-classifier"})
    response = client_for(handler, database).post(
        "/v1/hooks/alert", json=DATADOG_PAYLOAD, headers=headers
    )
    assert response.status_code == 401
    assert handler.alerts == []


def test_a_request_signed_by_the_reference_library_is_accepted(database: Database) -> None:
    handler = RecordingHandler({"review-classifier"})
    body = json.dumps(ALERTMANAGER_PAYLOAD)
    now = int(time.time())
    signature = Webhook(SECRET).sign(
        "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", datetime.fromtimestamp(now, UTC), body
    )
    headers = {
        "webhook-id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
        "webhook-timestamp": str(now),
        "webhook-signature": f"v1,{'A' * 43}= {signature}",
    }
    response = client_for(handler, database).post("/v1/hooks/alert", content=body, headers=headers)
    assert response.status_code == 202, response.text


def test_a_replayed_request_is_refused_on_every_replica(database: Database) -> None:
    handler = RecordingHandler({"review-classifier"})
    body = json.dumps(ALERTMANAGER_PAYLOAD).encode()
    headers = signed(body)
    assert (
        client_for(handler, database)
        .post("/v1/hooks/alert", content=body, headers=headers)
        .status_code
        == 202
    )
    replica = client_for(handler, database)  # another process on the same store
    replay = replica.post("/v1/hooks/alert", content=body, headers=headers)
    assert replay.status_code == 409
    assert "already received" in replay.json()["error"]["message"]
    assert len(handler.alerts) == 1
    fresh = replica.post("/v1/hooks/alert", content=body, headers=signed(body))
    assert fresh.status_code == 202


def test_a_request_outside_the_tolerance_is_refused(database: Database) -> None:
    handler = RecordingHandler({"review-classifier"})
    client = client_for(handler, database, tolerance=60)
    body = json.dumps(ALERTMANAGER_PAYLOAD).encode()
    for skew in (-62.0, 62.0):
        response = client.post(
            "/v1/hooks/alert", content=body, headers=signed(body, timestamp=time.time() + skew)
        )
        assert response.status_code == 401
        assert "tolerance is 60 s" in response.json()["error"]["message"]
    assert (
        client.post(
            "/v1/hooks/alert", content=body, headers=signed(body, timestamp=time.time() - 50)
        ).status_code
        == 202
    )
    assert handler.alerts != []


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-timestamp": "12e9"},
        {"webhook-timestamp": "-5"},
        {"webhook-signature": "v1,not base64!"},
        {"webhook-signature": "v2,AAAA"},
        {"webhook-id": ""},
        {"webhook-id": "x" * 300},
    ],
)
def test_malformed_standard_headers_are_401(change: dict[str, str], database: Database) -> None:
    handler = RecordingHandler({"review-classifier"})
    body = json.dumps(ALERTMANAGER_PAYLOAD).encode()
    headers = {**signed(body), **change}
    response = client_for(handler, database).post("/v1/hooks/alert", content=body, headers=headers)
    assert response.status_code == 401
    assert handler.alerts == []


def test_the_legacy_scheme_is_refused_unless_configured(database: Database) -> None:
    handler = RecordingHandler({"review-classifier"})
    body = json.dumps(ALERTMANAGER_PAYLOAD).encode()
    standard = client_for(handler, database)
    for headers in (legacy_signed(body, SECRET), {"Authorization": f"Bearer {SECRET}"}):
        assert standard.post("/v1/hooks/alert", content=body, headers=headers).status_code == 401
    legacy = client_for(handler, database, LEGACY_SECRET, signature="legacy")
    assert (
        legacy.post("/v1/hooks/alert", content=body, headers=legacy_signed(body)).status_code == 202
    )
    assert (
        legacy.post(
            "/v1/hooks/alert", content=body, headers={"Authorization": f"Bearer {LEGACY_SECRET}"}
        ).status_code
        == 202
    )


def test_a_standard_secret_must_be_whsec_base64() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        HooksConfig(secret="plain-text-secret")
    with pytest.raises(ValueError, match="whsec_"):
        HooksConfig(secret="whsec_" + base64.b64encode(b"short").decode())
    assert HooksConfig(secret="plain-text-secret", signature="legacy").secret
    with pytest.raises(ConfigError, match="whsec_"):
        StandardSigner("whsec_!!")


def test_signature_over_a_different_body_is_401(database: Database) -> None:
    handler = RecordingHandler({"review-classifier"})
    body = json.dumps(ALERTMANAGER_PAYLOAD).encode()
    tampered = body.replace(b"review-classifier", b"other-model")
    response = client_for(handler, database).post(
        "/v1/hooks/alert", content=tampered, headers=signed(body)
    )
    assert response.status_code == 401


def test_no_secret_configured_refuses_everything(database: Database) -> None:
    handler = RecordingHandler({"review-classifier"})
    response = client_for(handler, database, secret=None).post(
        "/v1/hooks/alert", json=DATADOG_PAYLOAD, headers={"Authorization": "Bearer "}
    )
    assert response.status_code == 401
    assert "hooks.secret" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"hello": "world"}', "not a Datadog"),
        (json.dumps({**ALERTMANAGER_PAYLOAD, "version": "3"}).encode(), "version"),
        (
            json.dumps(
                {
                    **ALERTMANAGER_PAYLOAD,
                    "commonLabels": {},
                    "alerts": [{**ALERTMANAGER_PAYLOAD["alerts"][0], "labels": {"alertname": "x"}}],
                }
            ).encode(),
            "no 'model' label",
        ),
        (
            json.dumps({"title": "Model confidence low", "event_type": "x"}).encode(),
            "alert_transition",
        ),
        (
            json.dumps({**DATADOG_PAYLOAD, "title": "[Triggered] no scope"}).encode(),
            "names no model",
        ),
    ],
)
def test_malformed_payloads_are_422(body: bytes, message: str, database: Database) -> None:
    handler = RecordingHandler({"review-classifier"})
    response = client_for(handler, database).post(
        "/v1/hooks/alert", content=body, headers=signed(body)
    )
    assert response.status_code == 422
    assert message in response.json()["error"]["message"]


def test_unknown_model_is_404(database: Database) -> None:
    jobs: list[tuple[str, str | None, str]] = []

    def enqueue(model: str, incident_id: str | None, reason: str) -> str:
        jobs.append((model, incident_id, reason))
        return "job-1"

    handler = InboundRetrainHandler(notify_config(models={"other-model": {}}), enqueue)
    body = json.dumps(ALERTMANAGER_PAYLOAD).encode()
    response = client_for(handler, database).post(
        "/v1/hooks/alert", content=body, headers=signed(body)
    )
    assert response.status_code == 404
    assert "review-classifier" in response.json()["error"]["message"]
    assert jobs == []


def test_retrain_handler_enqueues_while_firing(database: Database) -> None:
    jobs: list[tuple[str, str | None, str]] = []

    def enqueue(model: str, incident_id: str | None, reason: str) -> str:
        jobs.append((model, incident_id, reason))
        return "job-1"

    handler = InboundRetrainHandler(notify_config(), enqueue)
    client = client_for(handler, database)
    body = json.dumps(ALERTMANAGER_PAYLOAD).encode()
    response = client.post("/v1/hooks/alert", content=body, headers=signed(body))
    assert response.status_code == 202
    incident = response.json()["incident_id"]
    assert incident.startswith("inbound-alertmanager-")
    assert jobs == [
        (
            "review-classifier",
            incident,
            "alertmanager alert firing: Model confidence low: review-classifier",
        )
    ]

    resolved = copy.deepcopy(ALERTMANAGER_PAYLOAD)
    resolved["status"] = resolved["alerts"][0]["status"] = "resolved"
    body = json.dumps(resolved).encode()
    response = client.post("/v1/hooks/alert", content=body, headers=signed(body))
    assert response.status_code == 202
    assert response.json()["incident_id"] == incident
    assert len(jobs) == 1


def test_graph_router_serves_stored_graphs(database: Database) -> None:
    store = GraphStore(database)
    png = render_graph(
        [SeriesPoint(1.0, 0.9, 0.8, 1.0, 3), SeriesPoint(61.0, 0.7, 0.6, 0.8, 3)],
        ThresholdLines(warning=0.8),
        title="t",
    )
    graph_id = store.put(png, monitor="confidence")
    client = TestClient(mounted_app(database, graph_router(store)))
    response = client.get(f"/v1/graphs/{graph_id}.png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == png
    missing = client.get(f"/v1/graphs/{'f' * 32}.png")
    assert missing.status_code == 404
    assert missing.json()["error"] == {"type": "NotFoundError", "message": f"no graph {'f' * 32!r}"}


def test_oversized_body_is_413(database: Database) -> None:
    handler = RecordingHandler({"review-classifier"})
    body = b'{"title": "' + b"x" * 1_100_000 + b'"}'
    response = client_for(handler, database).post(
        "/v1/hooks/alert", content=body, headers=signed(body)
    )
    assert response.status_code == 413
