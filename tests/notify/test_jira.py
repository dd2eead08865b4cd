from __future__ import annotations

from typing import Any

from driftloop.database.core import Database
from driftloop.monitors.events import MonitorState
from driftloop.notify import NotificationRouter
from notify.fake_services import (
    JIRA_EMAIL,
    JIRA_TOKEN,
    FakeApiServer,
    JiraFake,
    make_event,
    notify_config,
)


def jira_router(server: FakeApiServer, database: Database, **jira: Any) -> NotificationRouter:
    entry = {
        "type": "jira",
        "url": server.url,
        "project": "MLOPS",
        "token": JIRA_TOKEN,
        "labels": ["driftloop", "model drift"],
        **jira,
    }
    return NotificationRouter(notify_config({"jira-mlops": entry}), database, sleep=lambda _s: None)


def warn_then_alert(router: NotificationRouter) -> None:
    router.dispatch(
        make_event(
            event_id="e1",
            state=MonitorState.WARN,
            previous=MonitorState.OK,
            value=0.76,
            timestamp=1000.0,
            message="Confidence of review-classifier is 0.76.",
        )
    )
    [result] = router.dispatch(make_event(event_id="e2", timestamp=1300.0, handles=("jira-mlops",)))
    assert result.status == "delivered", result.error
    assert result.detail == "created MLOPS-1"


def test_v2_creates_an_issue_with_the_timeline_then_comments_and_resolves(
    server: FakeApiServer, database: Database
) -> None:
    fake = JiraFake(server, version=2)
    router = jira_router(server, database, email=JIRA_EMAIL, resolve_transition="Done")
    warn_then_alert(router)

    [create] = server.to("/rest/api/2/issue")
    assert create.headers["content-type"] == "application/json"
    assert create.headers["authorization"].startswith("Basic ")
    fields = fake.issues["MLOPS-1"]
    assert fields["project"] == {"key": "MLOPS"}
    assert fields["issuetype"] == {"name": "Bug"}
    assert fields["summary"] == "[ALERT] confidence on review-classifier"
    assert fields["labels"] == ["driftloop", "model-drift"]
    description = fields["description"]
    assert "h3. Incident timeline" in description
    assert "OK → WARN  value 0.76" in description
    assert "WARN → ALERT  value 0.65" in description
    assert "[https://driftloop.example.com/dashboard?monitor=confidence" in description

    # a later transition of the same incident: a comment, no new issue
    [again] = router.dispatch(
        make_event(
            event_id="e3",
            state=MonitorState.WARN,
            previous=MonitorState.ALERT,
            value=0.75,
            timestamp=1600.0,
            handles=("jira-mlops",),
        )
    )
    assert again.detail == "commented on MLOPS-1"
    assert len(server.to("/rest/api/2/issue")) == 1
    assert "ALERT → WARN" in fake.comments["MLOPS-1"][0]

    # recovery after a restart: the link is in the store
    restarted = jira_router(server, database, email=JIRA_EMAIL, resolve_transition="Done")
    [recovered] = restarted.dispatch(
        make_event(
            event_id="e4",
            state=MonitorState.OK,
            previous=MonitorState.WARN,
            value=0.9,
            timestamp=1900.0,
            handles=("jira-mlops",),
        )
    )
    assert recovered.status == "delivered"
    assert recovered.detail == "commented on MLOPS-1 and resolved"
    assert fake.status["MLOPS-1"] == "Done"
    [move] = [r for r in server.to("/rest/api/2/issue/MLOPS-1/transitions") if r.method == "POST"]
    assert move.json() == {"transition": {"id": "31"}}
    assert "[Recovered]" in fake.comments["MLOPS-1"][1]


def test_v3_uses_bearer_auth_and_atlassian_document_format(
    server: FakeApiServer, database: Database
) -> None:
    fake = JiraFake(server, version=3)
    router = jira_router(server, database, api_version=3, issue_type="Task")
    warn_then_alert(router)
    [create] = server.to("/rest/api/3/issue")
    assert create.headers["authorization"] == f"Bearer {JIRA_TOKEN}"
    doc = fake.issues["MLOPS-1"]["description"]
    assert doc["type"] == "doc"
    assert doc["version"] == 1
    kinds = [node["type"] for node in doc["content"]]
    assert "heading" in kinds
    assert kinds[-1] == "bulletList"
    items = doc["content"][-1]["content"]
    texts = [item["content"][0]["content"][0]["text"] for item in items]
    assert len(texts) == 2
    assert "OK → WARN" in texts[0]
    assert "WARN → ALERT" in texts[1]
    links = [
        mark
        for node in doc["content"]
        for text in node.get("content", [])
        for mark in text.get("marks", [])
        if mark["type"] == "link"
    ]
    assert links[0]["attrs"]["href"].startswith("https://driftloop.example.com/dashboard")

    router.dispatch(
        make_event(
            event_id="e3",
            state=MonitorState.OK,
            value=0.9,
            timestamp=1600.0,
            handles=("jira-mlops",),
        )
    )
    comment = fake.comments["MLOPS-1"][0]
    assert comment["type"] == "doc"
    assert fake.status["MLOPS-1"] == "To Do"  # no resolve_transition configured


def test_jira_400_reports_the_field_errors(server: FakeApiServer, database: Database) -> None:
    JiraFake(server, version=2)
    router = jira_router(server, database, issue_type="Epic Fail")
    [result] = router.dispatch(make_event(handles=("jira-mlops",)))
    assert result.status == "failed"
    assert result.http_status == 400
    assert result.attempts == 1
    assert "issuetype: Specify a valid issue type" in (result.error or "")


def test_jira_401_is_not_retried(server: FakeApiServer, database: Database) -> None:
    JiraFake(server, version=2)
    entry = {"type": "jira", "url": server.url, "project": "MLOPS", "token": "wrong"}
    router = NotificationRouter(notify_config({"jira-mlops": entry}), database)
    [result] = router.dispatch(make_event(handles=("jira-mlops",)))
    assert (result.status, result.http_status, result.attempts) == ("failed", 401, 1)
    assert "You are not authenticated." in (result.error or "")


def test_unknown_transition_is_a_clear_failure(server: FakeApiServer, database: Database) -> None:
    JiraFake(server, version=2)
    router = jira_router(server, database, resolve_transition="Closed")
    router.dispatch(make_event(event_id="e1", handles=("jira-mlops",)))
    [result] = router.dispatch(
        make_event(event_id="e2", state=MonitorState.OK, handles=("jira-mlops",))
    )
    assert result.status == "failed"
    assert "no transition 'Closed'" in (result.error or "")
    assert "Done" in (result.error or "")


def test_recovery_without_an_issue_is_skipped(server: FakeApiServer, database: Database) -> None:
    JiraFake(server, version=2)
    router = jira_router(server, database)
    [result] = router.dispatch(make_event(state=MonitorState.OK, handles=("jira-mlops",)))
    assert result.status == "skipped"
    assert server.requests == []
