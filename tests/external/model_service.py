"""A model served elsewhere, for the tests: its own process on loopback with its own model.

It answers the deploy hook (``POST /deploy``, Standard Webhooks signature checked with the
secret in ``$DEPLOY_HOOK_SECRET``), swaps the version it serves, and reports each served
prediction's confidence to driftloop over ``POST /v1/insights`` with the key in
``$DRIFTLOOP_KEY``, tagged with the model and the version it serves. ``GET /state`` shows what it
serves and every hook call it received; ``POST /fail`` with ``{"actions": ["deploy"]}`` makes
the hook calls of those actions answer 500 from then on.

Its model is a stand-in classifier whose confidence per version is set on the command line
(``--confidence 1=0.8 2=0.95``): the tests decide how well each version does.

    python model_service.py PORT DRIFTLOOP_URL MODEL VERSION --confidence 1=0.8 2=0.95
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class ServedModel:
    """The version this service answers with, and the hook calls it received."""

    def __init__(self, model: str, version: int, confidence: dict[int, float]) -> None:
        self.model = model
        self.version = version
        self.confidence = confidence
        self.calls: list[dict[str, Any]] = []
        self.failing: set[str] = set()
        self.lock = threading.Lock()
        self.random = random.Random(7)

    def predict(self) -> tuple[int, float]:
        with self.lock:
            version = self.version
        mean = self.confidence.get(version, 0.5)
        return version, min(1.0, max(0.0, self.random.gauss(mean, 0.02)))


def handler(served: ServedModel, webhook: Webhook) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            with served.lock:
                self._answer(200, {"version": served.version, "calls": served.calls})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/fail":
                served.failing = set(json.loads(body)["actions"])
                self._answer(200, {})
                return
            try:
                payload = webhook.verify(body, dict(self.headers.items()))
            except WebhookVerificationError as exc:
                self._answer(401, {"error": f"bad signature: {exc}"})
                return
            with served.lock:
                served.calls.append({**payload, "webhook-id": self.headers["webhook-id"]})
                if payload["action"] in served.failing:
                    self._answer(500, {"error": "the model server is down for maintenance"})
                    return
                served.version = int(payload["version"])
            self._answer(200, {"serving": served.version})

    return Handler


def report_forever(served: ServedModel, url: str, key: str) -> None:
    """Serve a stand-in request every 10 ms; send their insights every 100 ms."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as client:
        while True:
            points = []
            for _ in range(10):
                version, confidence = served.predict()
                points.append(
                    {
                        "name": "model_confidence",
                        "value": confidence,
                        "timestamp": time.time(),
                        "tags": {"model": served.model, "version": str(version)},
                    }
                )
                time.sleep(0.01)
            try:
                client.post("/v1/insights", json={"points": points}).raise_for_status()
            except httpx.HTTPError as exc:
                print(f"reporting failed: {exc}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("driftloop_url")
    parser.add_argument("model")
    parser.add_argument("version", type=int)
    parser.add_argument("--confidence", nargs="*", default=[])
    arguments = parser.parse_args()
    confidence = {
        int(version): float(value)
        for version, value in (item.split("=") for item in arguments.confidence)
    }
    served = ServedModel(arguments.model, arguments.version, confidence)
    webhook = Webhook(os.environ["DEPLOY_HOOK_SECRET"])
    server = ThreadingHTTPServer(("127.0.0.1", arguments.port), handler(served, webhook))
    reporter = threading.Thread(
        target=report_forever,
        args=(served, arguments.driftloop_url, os.environ["DRIFTLOOP_KEY"]),
        daemon=True,
    )
    reporter.start()
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
