"""Local HTTP servers that check requests the way Slack, Jira and GitHub document them and
answer as those APIs do, errors included."""

from __future__ import annotations

import base64
import functools
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from driftloop.config import Config
from driftloop.monitors.events import Event, MonitorState
from driftloop.testing.configs import make_config


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def params(self) -> dict[str, str]:
        """Query string and form body together (how slack-sdk sends Web API arguments)."""
        merged = dict(self.query)
        if self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            merged.update({k: v[0] for k, v in parse_qs(self.body.decode()).items()})
        return merged


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, dict | list):
            return json.dumps(self.body).encode(), "application/json;charset=utf-8"
        if isinstance(self.body, str):
            return self.body.encode(), "text/html"
        return self.body, "application/octet-stream"


Route = Callable[[Recorded], Reply]


class FakeApiServer:
    """A threaded HTTP server on 127.0.0.1 with routes by (method, path)."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[Recorded] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorded = Recorded(
                    method=self.command,
                    path=split.path,
                    query={k: v[0] for k, v in parse_qs(split.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                server.requests.append(recorded)
                route = server.routes.get((self.command, split.path))
                reply = route(recorded) if route else Reply(404, {"message": "Not Found"})
                if reply.delay:
                    time.sleep(reply.delay)
                payload, content_type = reply.encoded()
                self.send_response(reply.status)
                headers = {"Content-Type": content_type, **reply.headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if payload:
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = _handle  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def route(self, method: str, path: str, handler: Route) -> None:
        self.routes[(method, path)] = handler

    def sequence(self, method: str, path: str, replies: list[Reply]) -> None:
        """Answer successive requests with successive replies (the last one repeats)."""
        remaining = list(replies)

        def handler(_request: Recorded) -> Reply:
            return remaining.pop(0) if len(remaining) > 1 else remaining[0]

        self.route(method, path, handler)

    def to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@contextmanager
def running_server() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- Slack ------------------------------------------------------------------------------------

SLACK_WEBHOOK_PATH = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
SLACK_BOT_TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
_BLOCK_TYPES = {"header", "section", "image", "actions", "context", "divider"}


def _valid_blocks(blocks: object) -> bool:
    if not isinstance(blocks, list) or not 0 < len(blocks) <= 50:
        return False
    for block in blocks:
        if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
            return False
        if block["type"] == "header":
            text = block.get("text", {})
            if text.get("type") != "plain_text" or not 0 < len(text.get("text", "")) <= 150:
                return False
        if block["type"] == "image":
            has_source = "image_url" in block or "slack_file" in block
            if not has_source or not block.get("alt_text"):
                return False
        if block["type"] == "section" and "text" not in block and "fields" not in block:
            return False
        if block["type"] == "section" and len(block.get("fields", [])) > 10:
            return False
    return True


class SlackFake:
    """Incoming webhook + the Web API's files upload v2 flow."""

    def __init__(
        self,
        server: FakeApiServer,
        *,
        webhook_error: str | None = None,
        web_error: str | None = None,
    ) -> None:
        self.server = server
        self.webhook_error = webhook_error
        self.web_error = web_error
        self.uploads: dict[str, bytes] = {}
        self._expected_length = 0
        server.route("POST", SLACK_WEBHOOK_PATH, self._webhook)
        server.route("POST", "/api/files.getUploadURLExternal", self._get_upload_url)
        server.route("POST", "/upload/v1/CwABAAAAXAoAAVnX", self._upload)
        server.route("POST", "/api/files.completeUploadExternal", self._complete)

    @property
    def webhook_url(self) -> str:
        return self.server.url + SLACK_WEBHOOK_PATH

    @property
    def api_url(self) -> str:
        return self.server.url + "/api/"

    def _webhook(self, request: Recorded) -> Reply:
        errors = {
            "invalid_token": 403,
            "no_service": 404,
            "channel_is_archived": 410,
            "action_prohibited": 403,
        }
        if self.webhook_error in errors:
            return Reply(errors[self.webhook_error], self.webhook_error)
        if self.webhook_error == "rate_limited":
            return Reply(429, "rate_limited", {"Retry-After": "2"})
        if not request.headers.get("content-type", "").startswith("application/json"):
            return Reply(400, "invalid_payload")
        try:
            body = request.json()
        except ValueError:
            return Reply(400, "invalid_payload")
        if not body.get("text") and not body.get("blocks"):
            return Reply(400, "no_text")
        if "blocks" in body and not _valid_blocks(body["blocks"]):
            return Reply(400, "invalid_blocks")
        return Reply(200, "ok")

    def _authorized(self, request: Recorded) -> bool:
        return request.headers.get("authorization") == f"Bearer {SLACK_BOT_TOKEN}"

    def _get_upload_url(self, request: Recorded) -> Reply:
        if self.web_error:
            return Reply(200, {"ok": False, "error": self.web_error})
        if not self._authorized(request):
            return Reply(200, {"ok": False, "error": "not_authed"})
        params = request.params()
        if not params.get("filename") or not params.get("length", "").isdigit():
            return Reply(200, {"ok": False, "error": "invalid_arguments"})
        self._expected_length = int(params["length"])
        upload_url = self.server.url + "/upload/v1/CwABAAAAXAoAAVnX"
        return Reply(200, {"ok": True, "upload_url": upload_url, "file_id": "F07A1B2C3D4"})

    def _upload(self, request: Recorded) -> Reply:
        if len(request.body) != self._expected_length:
            return Reply(400, "length mismatch")
        self.uploads["F07A1B2C3D4"] = request.body
        return Reply(200, f"OK - {len(request.body)}")

    def _complete(self, request: Recorded) -> Reply:
        if not self._authorized(request):
            return Reply(200, {"ok": False, "error": "not_authed"})
        params = request.params()
        files = json.loads(params.get("files", "[]"))
        if not files or files[0].get("id") not in self.uploads:
            return Reply(200, {"ok": False, "error": "file_not_found"})
        return Reply(
            200, {"ok": True, "files": [{"id": files[0]["id"], "title": files[0].get("title")}]}
        )


# -- Jira -------------------------------------------------------------------------------------

JIRA_EMAIL = "mlops-bot@example.com"
JIRA_TOKEN = "ATATT3xFfGF0-test-token"


class JiraFake:
    """Create issue, comment, transitions; validates like Jira Cloud."""

    def __init__(
        self,
        server: FakeApiServer,
        *,
        version: int = 2,
        projects: tuple[str, ...] = ("MLOPS",),
        issue_types: tuple[str, ...] = ("Bug", "Task"),
    ) -> None:
        self.server = server
        self.version = version
        self.projects = projects
        self.issue_types = issue_types
        self.issues: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, list[Any]] = {}
        self.status: dict[str, str] = {}
        api = f"/rest/api/{version}"
        server.route("POST", f"{api}/issue", self._create)
        self.api = api

    def _auth_ok(self, request: Recorded) -> bool:
        header = request.headers.get("authorization", "")
        basic = "Basic " + base64.b64encode(f"{JIRA_EMAIL}:{JIRA_TOKEN}".encode()).decode()
        return header in {basic, f"Bearer {JIRA_TOKEN}"}

    def _create(self, request: Recorded) -> Reply:
        if not self._auth_ok(request):
            return Reply(401, {"errorMessages": ["You are not authenticated."], "errors": {}})
        fields = request.json().get("fields", {})
        errors: dict[str, str] = {}
        if fields.get("project", {}).get("key") not in self.projects:
            errors["project"] = "valid project is required"
        if fields.get("issuetype", {}).get("name") not in self.issue_types:
            errors["issuetype"] = "Specify a valid issue type"
        summary = fields.get("summary")
        if not summary:
            errors["summary"] = "You must specify a summary of the issue."
        elif len(summary) > 255 or "\n" in summary:
            errors["summary"] = "Summary must be less than 255 characters."
        description = fields.get("description")
        if self.version == 3 and not (
            isinstance(description, dict) and description.get("type") == "doc"
        ):
            errors["description"] = "Operation value must be an Atlassian Document"
        if self.version == 2 and not isinstance(description, str):
            errors["description"] = "Operation value must be a string"
        if any(" " in label for label in fields.get("labels", [])):
            errors["labels"] = "The label must not contain spaces."
        if errors:
            return Reply(400, {"errorMessages": [], "errors": errors})
        number = len(self.issues) + 1
        key = f"{fields['project']['key']}-{number}"
        issue_id = str(10000 + number)
        self.issues[key] = fields
        self.comments[key] = []
        self.status[key] = "To Do"
        self.server.route(
            "POST", f"{self.api}/issue/{key}/comment", functools.partial(self._comment, key)
        )
        self.server.route(
            "GET", f"{self.api}/issue/{key}/transitions", functools.partial(self._transitions, key)
        )
        self.server.route(
            "POST", f"{self.api}/issue/{key}/transitions", functools.partial(self._transition, key)
        )
        return Reply(
            201,
            {"id": issue_id, "key": key, "self": f"{self.server.url}{self.api}/issue/{issue_id}"},
        )

    def _comment(self, key: str, request: Recorded) -> Reply:
        if not self._auth_ok(request):
            return Reply(401, {"errorMessages": ["You are not authenticated."], "errors": {}})
        body = request.json().get("body")
        if self.version == 3 and not (isinstance(body, dict) and body.get("type") == "doc"):
            return Reply(
                400,
                {
                    "errorMessages": [],
                    "errors": {"comment": "Comment body must be an Atlassian Document"},
                },
            )
        if self.version == 2 and not isinstance(body, str):
            return Reply(
                400, {"errorMessages": [], "errors": {"comment": "Comment body can not be empty!"}}
            )
        self.comments[key].append(body)
        return Reply(201, {"id": str(len(self.comments[key])), "body": body})

    def _transitions(self, key: str, request: Recorded) -> Reply:
        return Reply(
            200,
            {
                "expand": "transitions",
                "transitions": [
                    {"id": "11", "name": "To Do", "to": {"name": "To Do"}},
                    {"id": "21", "name": "In Progress", "to": {"name": "In Progress"}},
                    {"id": "31", "name": "Done", "to": {"name": "Done"}},
                ],
            },
        )

    def _transition(self, key: str, request: Recorded) -> Reply:
        wanted = request.json().get("transition", {}).get("id")
        names = {"11": "To Do", "21": "In Progress", "31": "Done"}
        if wanted not in names:
            return Reply(
                400,
                {
                    "errorMessages": [
                        "Transition id '" + str(wanted) + "' is not valid for this issue."
                    ],
                    "errors": {},
                },
            )
        self.status[key] = names[wanted]
        return Reply(204)


# -- GitHub -----------------------------------------------------------------------------------

GITHUB_TOKEN = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
GITHUB_DOCS = "https://docs.github.com/rest/actions/workflows#create-a-workflow-dispatch-event"


class GithubFake:
    """``POST /repos/{owner}/{repo}/actions/workflows/{id}/dispatches``."""

    def __init__(
        self,
        server: FakeApiServer,
        *,
        repo: str = "acme/training",
        workflow: str = "retrain.yml",
        declared_inputs: tuple[str, ...] = ("incident_id", "model"),
        token_scheme: str = "Bearer",  # noqa: S107
    ) -> None:
        self.declared_inputs = declared_inputs
        self.token_scheme = token_scheme
        self.path = f"/repos/{repo}/actions/workflows/{workflow}/dispatches"
        server.route("POST", self.path, self._dispatch)

    def _dispatch(self, request: Recorded) -> Reply:
        if request.headers.get("authorization") != f"{self.token_scheme} {GITHUB_TOKEN}":
            return Reply(
                401,
                {
                    "message": "Bad credentials",
                    "documentation_url": "https://docs.github.com/rest",
                    "status": "401",
                },
            )
        if request.headers.get("accept") != "application/vnd.github+json":
            return Reply(
                415, {"message": "Unsupported 'Accept' header", "documentation_url": GITHUB_DOCS}
            )
        body = request.json()
        if not isinstance(body.get("ref"), str):
            return Reply(
                422,
                {
                    "message": 'Invalid request.\n\n"ref" wasn\'t supplied.',
                    "documentation_url": GITHUB_DOCS,
                    "status": "422",
                },
            )
        inputs = body.get("inputs", {})
        unexpected = sorted(set(inputs) - set(self.declared_inputs))
        if unexpected:
            return Reply(
                422,
                {
                    "message": f"Unexpected inputs provided: {json.dumps(unexpected)}",
                    "documentation_url": GITHUB_DOCS,
                    "status": "422",
                },
            )
        if not all(isinstance(v, str) for v in inputs.values()):
            return Reply(
                422,
                {
                    "message": "Invalid request.\n\nFor 'properties/inputs', values "
                    "must be strings.",
                    "documentation_url": GITHUB_DOCS,
                },
            )
        return Reply(204)


# -- shared builders --------------------------------------------------------------------------


def notify_config(
    notifiers: Mapping[str, Any] | None = None,
    *,
    monitors: list[dict[str, Any]] | None = None,
    models: Mapping[str, Any] | None = None,
    hooks_secret: str | None = None,
) -> Config:
    """``notifiers`` beside one confidence monitor of one model (or ``monitors``, ``models``)."""
    return make_config(
        public_url="https://driftloop.example.com",
        models=dict(models or {"review-classifier": {}}),
        monitors=monitors
        if monitors is not None
        else [
            {
                "name": "confidence",
                "metric": "model_confidence",
                "window": "5m",
                "below": {"warning": 0.8, "critical": 0.7},
                "message": "Confidence of {{model}} is {{value}}.",
            }
        ],
        notifiers=dict(notifiers or {}),
        hooks={"secret": hooks_secret},
    )


def make_event(
    *,
    event_id: str = "evt-1",
    state: MonitorState = MonitorState.ALERT,
    previous: MonitorState = MonitorState.WARN,
    value: float | None = 0.65,
    threshold: float | None = 0.7,
    incident_id: str | None = "inc-1",
    message: str = "Confidence of review-classifier is 0.65.",
    handles: tuple[str, ...] = (),
    timestamp: float = 1_700_000_000.0,
    monitor: str = "confidence",
    model: str = "review-classifier",
) -> Event:
    return Event(
        event_id=event_id,
        monitor=monitor,
        group={"model": model},
        previous=previous,
        state=state,
        value=value,
        threshold=threshold,
        timestamp=timestamp,
        incident_id=incident_id,
        message=message,
        handles=handles,
    )
