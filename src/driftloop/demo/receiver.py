"""A local stand-in for Slack's incoming webhook and GitHub's workflow_dispatch endpoint,
so the demo can show exactly what those services would receive."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from driftloop.timestamps import iso_utc

SLACK_PATH = "/services/T0DEMO/B0DEMO/driftloopdemo"


@dataclass(frozen=True)
class ReceivedRequest:
    received_at: float
    service: str
    method: str
    path: str
    headers: dict[str, str]
    body: Any

    def to_dict(self) -> dict[str, Any]:
        return {
            "received_at": iso_utc(self.received_at),
            "service": self.service,
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.body,
        }


@dataclass
class NotificationReceiver:
    """Answers like Slack (``200 ok``) and GitHub (``204``), and records every request."""

    requests: list[ReceivedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def slack_webhook_url(self) -> str:
        return self.url + SLACK_PATH

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                service = (
                    "slack"
                    if self.path == SLACK_PATH
                    else ("github" if self.path.endswith("/dispatches") else "unknown")
                )
                shown = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in {"content-type", "accept", "x-github-api-version", "user-agent"}
                }
                if "Authorization" in self.headers:
                    shown["Authorization"] = self.headers["Authorization"].split(" ")[0] + " ***"
                with receiver._lock:
                    receiver.requests.append(
                        ReceivedRequest(time.time(), service, "POST", self.path, shown, body)
                    )
                if service == "slack":
                    self._answer(200, b"ok", "text/plain")
                elif service == "github":
                    self._answer(204, b"", None)
                else:
                    self._answer(404, b'{"message": "Not Found"}', "application/json")

            def _answer(self, status: int, payload: bytes, content_type: str | None) -> None:
                self.send_response(status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(
            target=self._server.serve_forever, name="demo-receiver", daemon=True
        ).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def received(self, service: str | None = None) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self.requests if service is None or r.service == service]
