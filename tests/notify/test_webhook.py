from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from driftloop.database.core import Database
from driftloop.errors import ConfigError
from driftloop.notify import NotificationRouter
from notify.fake_services import (
    GITHUB_DOCS,
    GITHUB_TOKEN,
    FakeApiServer,
    GithubFake,
    Recorded,
    Reply,
    make_event,
    notify_config,
)

SECRET = "s3cr3t-shared"


def test_payload_template_headers_and_legacy_hmac_signature(
    server: FakeApiServer, database: Database
) -> None:
    def verify(request: Recorded) -> Reply:
        expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        if request.headers.get("x-hub-signature-256") != expected:
            return Reply(401, {"error": "bad signature"})
        return Reply(202, {"accepted": True})

    server.route("PUT", "/incidents", verify)
    config = notify_config(
        {
            "ops": {
                "type": "webhook",
                "url": server.url + "/incidents",
                "method": "PUT",
                "headers": {"X-Team": "mlops", "X-Incident": "{{incident_id}}"},
                "payload": {
                    "summary": "{{monitor}} is {{state}} on {{model}} ({{value}} < {{threshold}})",
                    "value": "{{value}}",
                    "alert": "{{is_alert}}",
                    "crossed": "{{threshold}}",
                    "text": "{{message}}",
                    "tags": ["model:{{model}}", "{{state}}"],
                },
                "hmac_secret": SECRET,
                "signature": "legacy",
                "hmac_header": "X-Hub-Signature-256",
            }
        }
    )
    router = NotificationRouter(config, database)
    event = make_event(handles=("ops",), message="value fell to {{event_id}} @ops")
    [result] = router.dispatch(event)

    assert result.status == "delivered", result.error
    assert result.http_status == 202
    [request] = server.to("/incidents")
    assert request.method == "PUT"
    assert request.headers["x-team"] == "mlops"
    assert request.headers["x-incident"] == "inc-1"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "summary": "confidence is ALERT on review-classifier (0.65 < 0.7)",
        "value": 0.65,
        "alert": True,
        "crossed": 0.7,
        "text": "value fell to {{event_id}}",  # values are inserted literally
        "tags": ["model:review-classifier", "ALERT"],
    }


STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the specification's example secret


def test_standard_webhooks_signature_verified_by_the_reference_library(
    server: FakeApiServer, database: Database
) -> None:
    receiver = Webhook(STANDARD_SECRET)
    seen: list[str] = []

    def verify(request: Recorded) -> Reply:
        try:
            receiver.verify(request.body, dict(request.headers))
        except WebhookVerificationError as exc:
            return Reply(401, {"error": str(exc)})
        seen.append(request.headers["webhook-id"])
        return Reply(204 if len(seen) > 1 else 503, {})

    server.route("POST", "/hook", verify)
    config = notify_config(
        {"ops": {"type": "webhook", "url": server.url + "/hook", "hmac_secret": STANDARD_SECRET}}
    )
    router = NotificationRouter(config, database, sleep=lambda _s: None)
    [result] = router.dispatch(make_event(handles=("ops",), message="drop @ops"))
    assert result.status == "delivered", result.error
    first, second = server.to("/hook")
    assert seen == ["evt-1", "evt-1"]  # a retry is the same message: the same webhook-id
    assert abs(int(second.headers["webhook-timestamp"]) - time.time()) < 30
    assert "x-driftloop-signature" not in first.headers
    tampered = first.body.replace(b"ALERT", b"OK")
    with pytest.raises(WebhookVerificationError):
        receiver.verify(tampered, dict(first.headers))


def test_a_standard_signature_needs_a_whsec_secret() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        notify_config(
            {
                "ops": {
                    "type": "webhook",
                    "url": "http://127.0.0.1:9/x",
                    "hmac_secret": "plain-secret",
                }
            }
        )


def test_generic_webhook_can_call_github_workflow_dispatch(
    server: FakeApiServer, database: Database
) -> None:
    fake = GithubFake(
        server, repo="owner/training-repo", workflow="deploy.yml", token_scheme="token"
    )
    config = notify_config(
        {
            "gh": {
                "type": "webhook",
                "url": f"{server.url}/repos/owner/training-repo/actions/workflows/deploy.yml"
                "/dispatches",
                "headers": {
                    "Authorization": f"token {GITHUB_TOKEN}",
                    "Accept": "application/vnd.github+json",
                },
                "payload": {"ref": "master"},
            }
        }
    )
    [result] = NotificationRouter(config, database).dispatch(make_event(handles=("gh",)))
    assert (result.status, result.http_status) == ("delivered", 204)
    [request] = server.to(fake.path)
    assert request.json() == {"ref": "master"}


def test_unknown_template_variable_is_a_config_error(database: Database) -> None:
    config = notify_config(
        {"ops": {"type": "webhook", "url": "http://127.0.0.1:9/x", "payload": {"v": "{{valeu}}"}}}
    )
    with pytest.raises(ConfigError, match=r"notifiers\.ops\.payload.*valeu"):
        NotificationRouter(config, database)


def github_config(server: FakeApiServer, **extra: object) -> dict[str, object]:
    return {
        "gh-retrain": {
            "type": "github_dispatch",
            "repo": "acme/training",
            "workflow": "retrain.yml",
            "ref": "main",
            "token": GITHUB_TOKEN,
            "api_url": server.url,
            **extra,
        }
    }


def test_github_dispatch_sends_the_documented_request(
    server: FakeApiServer, database: Database
) -> None:
    fake = GithubFake(server)
    config = notify_config(github_config(server, inputs={"model": "{{model}}"}))
    [result] = NotificationRouter(config, database).dispatch(make_event(handles=("gh-retrain",)))

    assert (result.status, result.http_status) == ("delivered", 204), result.error
    [request] = server.to(fake.path)
    assert request.method == "POST"
    assert request.headers["accept"] == "application/vnd.github+json"
    assert request.headers["authorization"] == f"Bearer {GITHUB_TOKEN}"
    assert request.headers["x-github-api-version"] == "2022-11-28"
    assert request.json() == {
        "ref": "main",
        "inputs": {"model": "review-classifier", "incident_id": "inc-1"},
    }


def test_github_404_for_an_unknown_workflow(server: FakeApiServer, database: Database) -> None:
    GithubFake(server, workflow="other.yml")
    config = notify_config(github_config(server))
    [result] = NotificationRouter(config, database).dispatch(make_event(handles=("gh-retrain",)))
    assert (result.status, result.http_status, result.attempts) == ("failed", 404, 1)
    assert "Not Found" in (result.error or "")


def test_github_422_for_undeclared_inputs(server: FakeApiServer, database: Database) -> None:
    GithubFake(server, declared_inputs=("incident_id",))
    config = notify_config(github_config(server, inputs={"model": "{{model}}"}))
    [result] = NotificationRouter(config, database).dispatch(make_event(handles=("gh-retrain",)))
    assert (result.status, result.http_status) == ("failed", 422)
    assert 'Unexpected inputs provided: ["model"]' in (result.error or "")
    assert GITHUB_DOCS in (result.error or "")
    assert not result.retryable
