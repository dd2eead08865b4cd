from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import replace
from typing import Any

import pytest

from driftloop.database.core import Database
from driftloop.errors import ConfigError
from driftloop.monitors.events import MonitorState
from driftloop.notify import NotificationRouter, RetryPolicy
from driftloop.timestamps import iso_utc
from notify.fake_services import (
    SLACK_WEBHOOK_PATH,
    FakeApiServer,
    Recorded,
    Reply,
    SlackFake,
    make_event,
    notify_config,
)
from waiting import wait_for

HOOK = "/hook"


def webhook_config(server: FakeApiServer) -> dict[str, object]:
    return {"hook": {"type": "webhook", "url": server.url + HOOK}}


def router_for(
    server: FakeApiServer, database: Database, sleeps: list[float], **kwargs: Any
) -> NotificationRouter:
    return NotificationRouter(
        notify_config(webhook_config(server)),
        database,
        sleep=sleeps.append,
        rng=random.Random(7),
        **kwargs,
    )


def test_retries_5xx_with_exponential_backoff_and_jitter(
    server: FakeApiServer, database: Database
) -> None:
    server.sequence(
        "POST",
        HOOK,
        [
            Reply(500, "boom"),
            Reply(502, "bad gateway"),
            Reply(503, "unavailable"),
            Reply(200, "fine"),
        ],
    )
    sleeps: list[float] = []
    router = router_for(
        server, database, sleeps, retry=RetryPolicy(max_attempts=5, base_delay=1.0, jitter=0.5)
    )
    [result] = router.dispatch(make_event(handles=("hook",)))

    assert result.status == "delivered"
    assert result.attempts == 4
    assert len(server.to(HOOK)) == 4
    assert len(sleeps) == 3
    for attempt, delay in enumerate(sleeps, start=1):
        full = 2.0 ** (attempt - 1)
        assert full * 0.5 <= delay <= full
    assert len(set(sleeps)) == 3
    log = sorted(router.deliveries(event_id="evt-1"), key=lambda a: a.attempt)
    assert [(a.attempt, a.status, a.http_status) for a in log] == [
        (1, "retrying", 500),
        (2, "retrying", 502),
        (3, "retrying", 503),
        (4, "delivered", 200),
    ]
    assert all(a.duration_ms >= 0 for a in log)


def test_429_waits_exactly_retry_after(server: FakeApiServer, database: Database) -> None:
    server.sequence("POST", HOOK, [Reply(429, "slow down", {"Retry-After": "7"}), Reply(204)])
    sleeps: list[float] = []
    [result] = router_for(server, database, sleeps).dispatch(make_event(handles=("hook",)))
    assert result.status == "delivered"
    assert sleeps == [7.0]
    attempts = router_for(server, database, []).deliveries(event_id="evt-1")
    assert {a.retry_after for a in attempts} == {7.0, None}


def test_retry_after_beyond_the_limit_gives_up(server: FakeApiServer, database: Database) -> None:
    server.route("POST", HOOK, lambda _r: Reply(429, "later", {"Retry-After": "3600"}))
    sleeps: list[float] = []
    [result] = router_for(server, database, sleeps).dispatch(make_event(handles=("hook",)))
    assert result.status == "failed"
    assert result.attempts == 1
    assert sleeps == []


def test_gives_up_after_max_attempts_and_does_not_retry_4xx(
    server: FakeApiServer, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    server.route("POST", HOOK, lambda _r: Reply(500, "down"))
    sleeps: list[float] = []
    router = router_for(server, database, sleeps, retry=RetryPolicy(max_attempts=3))
    with caplog.at_level(logging.INFO, logger="driftloop"):
        [result] = router.dispatch(make_event(handles=("hook",)))
    assert (result.status, result.attempts, result.http_status) == ("failed", 3, 500)
    assert any(
        r.levelno == logging.WARNING
        and r.getMessage().startswith("delivery of event evt-1 to @hook failed after 3 attempt(s)")
        for r in caplog.records
    )
    assert len(sleeps) == 2

    server.route("POST", HOOK, lambda _r: Reply(400, {"error": "bad request"}))
    [result] = router.dispatch(make_event(event_id="evt-2", handles=("hook",)))
    assert (result.status, result.attempts) == ("failed", 1)
    assert "bad request" in (result.error or "")


def test_timeouts_are_retried(server: FakeApiServer, database: Database) -> None:
    replies = [Reply(200, "late", delay=0.6), Reply(200, "ok")]
    server.sequence("POST", HOOK, replies)
    sleeps: list[float] = []
    router = router_for(server, database, sleeps, timeout=0.2)
    [result] = router.dispatch(make_event(handles=("hook",)))
    assert result.status == "delivered"
    assert result.attempts == 2
    first = max(router.deliveries(event_id="evt-1"), key=lambda a: -a.attempt)
    assert "did not answer in time" in (first.error or "")


def test_same_event_is_not_delivered_twice_even_after_a_restart(
    server: FakeApiServer, database: Database
) -> None:
    server.route("POST", HOOK, lambda _r: Reply(200, "ok"))
    event = make_event(handles=("hook",))
    first = router_for(server, database, []).dispatch(event)
    again = router_for(server, database, []).dispatch(event)  # a new process, same store
    assert first[0].status == "delivered"
    assert again[0].status == "duplicate"
    assert len(server.to(HOOK)) == 1
    other = router_for(server, database, []).dispatch(
        make_event(event_id="evt-2", handles=("hook",))
    )
    assert other[0].status == "delivered"


def test_a_failed_delivery_is_tried_again_when_the_event_comes_again(
    server: FakeApiServer, database: Database
) -> None:
    server.route("POST", HOOK, lambda _r: Reply(404, "gone"))
    event = make_event(handles=("hook",))
    assert router_for(server, database, []).dispatch(event)[0].status == "failed"
    server.route("POST", HOOK, lambda _r: Reply(200, "ok"))
    assert router_for(server, database, []).dispatch(event)[0].status == "delivered"
    assert router_for(server, database, []).dispatch(event)[0].status == "duplicate"


def test_routing_by_level_from_the_rendered_message(
    server: FakeApiServer, database: Database
) -> None:
    fake = SlackFake(server)
    template = (
        "Confidence of {{model}} is {{value}}.\n"
        "{{#is_warning}}@log{{/is_warning}}\n"
        "{{#is_alert}}@slack-x @log{{/is_alert}}"
    )
    config = notify_config(
        {"slack-x": {"type": "slack", "webhook_url": fake.webhook_url}},
        monitors=[
            {"name": "confidence", "below": {"warning": 0.8, "critical": 0.7}, "message": template}
        ],
    )
    router = NotificationRouter(config, database, sleep=lambda _s: None)
    # the monitor engine renders the sections for the new level:
    warn = make_event(
        event_id="w",
        state=MonitorState.WARN,
        previous=MonitorState.OK,
        message="Confidence of review-classifier is 0.75.\n@log\n",
    )
    alert = make_event(
        event_id="a",
        state=MonitorState.ALERT,
        previous=MonitorState.WARN,
        message="Confidence of review-classifier is 0.65.\n\n@slack-x @log",
    )
    warn_results = router.dispatch(warn)
    assert [r.notifier for r in warn_results] == ["log"]
    assert server.to(SLACK_WEBHOOK_PATH) == []
    alert_results = router.dispatch(alert)
    assert [(r.notifier, r.status) for r in alert_results] == [
        ("slack-x", "delivered"),
        ("log", "delivered"),
    ]
    [slack_request] = server.to(SLACK_WEBHOOK_PATH)
    assert "ALERT" in slack_request.json()["text"]


def test_log_is_the_default_and_writes_one_json_line(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    router = NotificationRouter(notify_config(), database)
    with caplog.at_level(logging.INFO, logger="driftloop"):
        event = replace(make_event(message="no mentions here"), details={"window_end": 1.7e9})
        [result] = router.dispatch(event)
    assert result.notifier == "log"
    assert any(
        r.getMessage().startswith("delivery of event evt-1 to @log: delivered after 1 attempt(s)")
        for r in caplog.records
    )
    [record] = [r for r in caplog.records if r.name == "driftloop.notify.log"]
    assert record.levelno == logging.ERROR  # ALERT (WARN is WARNING, the rest INFO)
    line = json.loads(record.getMessage())
    assert line["state"] == "ALERT"
    assert line["model"] == "review-classifier"
    assert line["event_id"] == "evt-1"
    assert line["message"] == "no mentions here"
    assert line["timestamp"] == iso_utc(1_700_000_000.0)  # ISO 8601 UTC (#21 part 5)
    assert line["details"]["window_end"] == iso_utc(1.7e9)


def test_unknown_handle_fails_alone(server: FakeApiServer, database: Database) -> None:
    server.route("POST", HOOK, lambda _r: Reply(200, "ok"))
    router = router_for(server, database, [])
    results = router.dispatch(make_event(handles=("nobody", "hook")))
    assert [(r.notifier, r.status) for r in results] == [
        ("nobody", "failed"),
        ("hook", "delivered"),
    ]
    assert "@nobody is not a notifier" in (results[0].error or "")


def test_retrain_calls_the_injected_pipeline(database: Database) -> None:
    calls: list[tuple[str, str | None, str]] = []

    def enqueue(model: str, incident_id: str | None, reason: str) -> str:
        calls.append((model, incident_id, reason))
        return "job-42"

    config = notify_config(
        monitors=[
            {
                "name": "confidence",
                "below": {"critical": 0.7},
                "message": "{{#is_alert}}@retrain{{/is_alert}}",
            }
        ]
    )
    router = NotificationRouter(config, database, enqueue_retrain=enqueue)
    [result] = router.dispatch(make_event(handles=("retrain",)))
    assert result.status == "delivered"
    assert result.detail == "retrain job job-42 for review-classifier"
    assert calls == [
        (
            "review-classifier",
            "inc-1",
            "monitor 'confidence' went WARN → ALERT: value 0.65 (threshold 0.7)",
        )
    ]
    [recovered] = router.dispatch(
        make_event(event_id="evt-2", state=MonitorState.OK, handles=("retrain",))
    )
    assert recovered.status == "skipped"
    assert len(calls) == 1


def test_a_routed_retrain_requires_the_pipeline(database: Database) -> None:
    config = notify_config(
        monitors=[
            {
                "name": "confidence",
                "below": {"critical": 0.7},
                "message": "{{#is_alert}}@retrain{{/is_alert}}",
            }
        ]
    )
    with pytest.raises(ConfigError, match="enqueue_retrain"):
        NotificationRouter(config, database)


def test_thresholds_and_timeline_come_with_the_notification(database: Database) -> None:
    router = NotificationRouter(notify_config(), database)
    router.dispatch(
        make_event(
            event_id="e1",
            state=MonitorState.WARN,
            previous=MonitorState.OK,
            value=0.75,
            timestamp=100.0,
        )
    )
    notification = router.notification_for(make_event(event_id="e2", timestamp=200.0))
    assert (
        notification.thresholds.warning,
        notification.thresholds.critical,
        notification.thresholds.direction,
    ) == (0.8, 0.7, "below")
    assert [(t.previous, t.state) for t in notification.timeline] == [("OK", "WARN")]
    assert notification.dashboard_url == (
        "https://driftloop.example.com/dashboard?monitor=confidence&model=review-classifier"
    )


def test_background_mode_does_not_block_the_caller(
    server: FakeApiServer, database: Database
) -> None:
    returned = threading.Event()
    answered_after_return: list[bool] = []

    def hook_that_answers_once_the_caller_is_back(_request: Recorded) -> Reply:
        answered_after_return.append(returned.wait(60))
        return Reply(200, "ok")

    server.route("POST", HOOK, hook_that_answers_once_the_caller_is_back)
    # a blocking call would wait out the hook's 60 s wait: the client's timeout is longer
    router = router_for(server, database, [], timeout=90.0)
    router.start()
    try:
        began = time.monotonic()
        router(make_event(handles=("hook",)))
        took = time.monotonic() - began
        returned.set()
        assert router.join(timeout=30)
    finally:
        returned.set()
        router.stop()
    assert answered_after_return == [True]
    assert took < 10, took  # nor a shorter wait on the hook: it answers in no time
    assert len(server.to(HOOK)) == 1
    assert router.deliveries(event_id="evt-1")[0].status == "delivered"


def test_queued_events_survive_a_restart(server: FakeApiServer, database: Database) -> None:
    server.route("POST", HOOK, lambda _r: Reply(200, "ok"))
    crashed = router_for(server, database, [])
    crashed.enqueue(make_event(handles=("hook",)))  # queued, never sent: the process dies
    assert server.to(HOOK) == []
    restarted = router_for(server, database, [])
    restarted.start()
    try:
        assert restarted.join(timeout=5)
    finally:
        restarted.stop()
    assert len(server.to(HOOK)) == 1


def test_stop_does_not_wait_out_a_retry(server: FakeApiServer, database: Database) -> None:
    server.route("POST", HOOK, lambda _r: Reply(503, "down"))
    router = NotificationRouter(
        notify_config(webhook_config(server)),
        database,
        retry=RetryPolicy(base_delay=30.0, jitter=0.0),
    )
    router.start()
    router(make_event(handles=("hook",)))
    wait_for(lambda: router.deliveries(event_id="evt-1"), 30, "the first delivery attempt")
    began = time.perf_counter()
    router.stop()
    assert time.perf_counter() - began < 10  # not the 30 s backoff
    # not marked as routed: the next start tries again
    server.route("POST", HOOK, lambda _r: Reply(200, "ok"))
    again = router_for(server, database, [])
    again.start()
    try:
        assert again.join(timeout=5)
    finally:
        again.stop()
    assert again.deliveries(event_id="evt-1")[0].status == "delivered"


def test_renotifications_are_new_events(server: FakeApiServer, database: Database) -> None:
    server.route("POST", HOOK, lambda _r: Reply(200, "ok"))
    router = router_for(server, database, [])
    first = make_event(handles=("hook",))
    renotified = replace(
        first, event_id="evt-1-renotify-1", renotification=True, timestamp=first.timestamp + 3600
    )
    assert router.dispatch(first)[0].status == "delivered"
    assert router.dispatch(renotified)[0].status == "delivered"
    titles = [r.json()["title"] for r in server.to(HOOK)]
    assert titles == [
        "[ALERT] confidence on review-classifier",
        "[ALERT] confidence on review-classifier (renotification)",
    ]
