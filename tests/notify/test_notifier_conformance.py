"""Every built-in notifier passes driftloop.testing's notifier suite, against local HTTP servers
that check the documented requests (tests/notify/fake_services.py)."""

from __future__ import annotations

import logging
import threading

import pytest

from driftloop.config import (
    GithubDispatchNotifierConfig,
    JiraNotifierConfig,
    SlackNotifierConfig,
    WebhookNotifierConfig,
)
from driftloop.database.core import Database
from driftloop.notify.base import DeliveryResult, Notification, Notifier
from driftloop.notify.github import GithubDispatchNotifier
from driftloop.notify.jira import JiraNotifier
from driftloop.notify.log import LogNotifier
from driftloop.notify.slack import SlackNotifier
from driftloop.notify.webhook import WebhookNotifier
from driftloop.testing.checks import ConformanceError, NotifierSubject, check_notifier
from notify.fake_services import (
    GITHUB_TOKEN,
    JIRA_EMAIL,
    JIRA_TOKEN,
    FakeApiServer,
    GithubFake,
    JiraFake,
    Recorded,
    Reply,
    Route,
    SlackFake,
)

WEBHOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # base64 of 24 bytes


class Answers:
    """Makes a fake server answer every route it has with one status, and back."""

    def __init__(self, server: FakeApiServer) -> None:
        self.server = server
        self.saved: dict[tuple[str, str], Route] = {}

    def __call__(self, status: int | None) -> None:
        self.server.routes.update(self.saved)
        self.saved = {}
        if status is None:
            return
        self.saved = dict(self.server.routes)
        reply = Reply(
            status, {"message": f"forced {status}"}, {"Retry-After": "1"} if status == 429 else {}
        )

        def answer(_request: Recorded) -> Reply:
            return reply

        for key in self.saved:
            self.server.routes[key] = answer


def test_slack_notifier(server: FakeApiServer) -> None:
    slack = SlackFake(server)
    config = SlackNotifierConfig(type="slack", webhook_url=slack.webhook_url)
    check_notifier(
        NotifierSubject(
            lambda: SlackNotifier(config, public_url="https://driftloop.example.com"),
            lambda: len(server.to(slack.webhook_url.removeprefix(server.url))),
            Answers(server),
            secrets=[slack.webhook_url.rsplit("/", 1)[1]],
        )
    )


def test_jira_notifier(server: FakeApiServer, database: Database) -> None:
    jira = JiraFake(server)
    config = JiraNotifierConfig(
        type="jira", url=server.url, project="MLOPS", token=JIRA_TOKEN, email=JIRA_EMAIL
    )
    check_notifier(
        NotifierSubject(
            lambda: JiraNotifier(config, database=database),
            lambda: len(jira.issues) + sum(len(c) for c in jira.comments.values()),
            Answers(server),
            secrets=[JIRA_TOKEN],
        )
    )


def test_webhook_notifier(server: FakeApiServer) -> None:
    server.route("POST", "/hook", lambda _request: Reply(202, {"accepted": True}))
    config = WebhookNotifierConfig(
        type="webhook",
        url=server.url + "/hook",
        headers={"Authorization": "Bearer hook-token-123"},
        hmac_secret=WEBHOOK_SECRET,
    )
    check_notifier(
        NotifierSubject(
            lambda: WebhookNotifier(config),
            lambda: len(server.to("/hook")),
            Answers(server),
            secrets=[WEBHOOK_SECRET, "hook-token-123"],
        )
    )


def test_github_dispatch_notifier(server: FakeApiServer) -> None:
    github = GithubFake(server, declared_inputs=("incident_id", "model", "monitor"))
    config = GithubDispatchNotifierConfig(
        type="github_dispatch",
        repo="acme/training",
        workflow="retrain.yml",
        token=GITHUB_TOKEN,
        api_url=server.url,
        inputs={"incident_id": "{{incident_id}}", "model": "{{model}}"},
    )
    check_notifier(
        NotifierSubject(
            lambda: GithubDispatchNotifier(config),
            lambda: len(server.to(github.path)),
            Answers(server),
            secrets=[GITHUB_TOKEN],
        )
    )


class Lines(logging.Handler):
    """Counts the records of the log notifier's logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self.count += 1


def test_log_notifier() -> None:
    logger = logging.getLogger("driftloop.notify.log")
    lines, level = Lines(), logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        check_notifier(NotifierSubject(LogNotifier, lambda: lines.count))
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)


class LeakyNotifier(Notifier):
    """Logs the URL it posts to, token and all: what the suite is there to catch."""

    def __init__(self, url: str) -> None:
        self.inner = WebhookNotifier(WebhookNotifierConfig(type="webhook", url=url))
        self.url = url

    def send(self, notification: Notification) -> DeliveryResult:
        logging.getLogger("driftloop_leaky").debug("posting to %s", self.url)
        return self.inner.send(notification)


class RaisingNotifier(Notifier):
    """Raises on an error answer instead of reporting a failed result."""

    def __init__(self, url: str) -> None:
        self.inner = WebhookNotifier(WebhookNotifierConfig(type="webhook", url=url))

    def send(self, notification: Notification) -> DeliveryResult:
        result = self.inner.send(notification)
        if not result.ok:
            raise RuntimeError(result.error)
        return result


def test_the_suite_catches_a_leaked_secret_and_a_raised_error(server: FakeApiServer) -> None:
    def accept(_request: Recorded) -> Reply:
        return Reply(200, {"ok": True})

    server.route("POST", "/hook", accept)
    url = server.url + "/hook?token=sekrit-42"
    with pytest.raises(ConformanceError, match=r"never_logs_secrets.*driftloop_leaky"):
        check_notifier(
            NotifierSubject(
                lambda: LeakyNotifier(url), lambda: len(server.to("/hook")), secrets=["sekrit-42"]
            )
        )
    with pytest.raises(ConformanceError, match=r"reports_an_error_answer.*RuntimeError"):
        check_notifier(
            NotifierSubject(
                lambda: RaisingNotifier(url), lambda: len(server.to("/hook")), Answers(server)
            )
        )
