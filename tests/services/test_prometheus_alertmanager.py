"""Real Prometheus and Alertmanager (Debian's packages) started by scripts/services/*.sh."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from servicekit import PrometheusService, service_script

pytestmark = pytest.mark.prometheus


@pytest.fixture
def metrics_target() -> Iterator[tuple[str, Gauge]]:
    """A tiny /metrics endpoint on 127.0.0.1 with one driftloop gauge."""
    registry = CollectorRegistry()
    gauge = Gauge("driftloop_model_confidence", "Mean confidence", ["model"], registry=registry)
    gauge.labels(model="churn").set(0.42)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{server.server_port}", gauge
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def webhook() -> Iterator[tuple[str, queue.Queue[dict[str, Any]]]]:
    """An HTTP receiver for Alertmanager's webhook notifications."""
    received: queue.Queue[dict[str, Any]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.put(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            del format, args

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _query(prometheus_url: str, expression: str, timeout: float = 30) -> list[dict[str, Any]]:
    """Poll an instant query until it returns a sample (the first scrape takes a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": expression})
        answer.raise_for_status()
        body = answer.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def test_scrape_query_and_alert_through_alertmanager_to_a_webhook(
    prometheus_service: PrometheusService,
    metrics_target: tuple[str, Gauge],
    webhook: tuple[str, queue.Queue[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    # One Prometheus start for both checks: its first scrape comes ~5 s after it is ready.
    target, gauge = metrics_target
    webhook_url, received = webhook
    alertmanager_config = tmp_path / "alertmanager.yml"
    alertmanager_config.write_text(
        "route: {receiver: driftloop, group_wait: 1s, group_interval: 1s, repeat_interval: 1h}\n"
        f"receivers:\n  - name: driftloop\n    webhook_configs: [{{url: '{webhook_url}'}}]\n"
    )
    alertmanager_url = prometheus_service.start_alertmanager(alertmanager_config)
    assert alertmanager_url.startswith("http://127.0.0.1:")
    (tmp_path / "rules.yml").write_text(
        "groups:\n  - name: driftloop\n    rules:\n"
        "      - alert: ModelConfidenceLow\n"
        "        expr: driftloop_model_confidence < 0.5\n"
        "        labels: {severity: critical}\n"
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [rules.yml]\n"  # relative to this file's folder
        "alerting:\n  alertmanagers:\n"
        f"    - static_configs: [{{targets: ['{alertmanager_url.removeprefix('http://')}']}}]\n"
        "scrape_configs:\n"
        f"  - job_name: driftloop\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    url = prometheus_service.start_prometheus(config)
    assert url.startswith("http://127.0.0.1:")

    result = _query(url, 'driftloop_model_confidence{job="driftloop",model="churn"}')
    assert len(result) == 1
    assert float(result[0]["value"][1]) == pytest.approx(0.42)

    notice = received.get(timeout=60)
    assert notice["status"] == "firing"
    alert = notice["alerts"][0]
    assert alert["labels"]["alertname"] == "ModelConfidenceLow"
    assert alert["labels"]["model"] == "churn"
    assert alert["labels"]["severity"] == "critical"

    gauge.labels(model="churn").set(0.17)
    deadline = time.monotonic() + 30
    value = 0.42
    while value != pytest.approx(0.17) and time.monotonic() < deadline:
        time.sleep(0.5)
        value = float(_query(url, "driftloop_model_confidence")[0]["value"][1])
    assert value == pytest.approx(0.17)


def test_start_with_a_changed_config_reloads_and_another_file_restarts(
    prometheus_service: PrometheusService, tmp_path: Path
) -> None:
    first = tmp_path / "a" / "prometheus.yml"
    first.parent.mkdir()
    first.write_text("global: {scrape_interval: 1s}\n")
    url = prometheus_service.start_prometheus(first)
    pid = _pid("prometheus")
    assert "scrape_interval: 1s" in _loaded_config(url)

    first.write_text("global: {scrape_interval: 2s}\n")
    assert prometheus_service.start_prometheus(first) == url
    assert _pid("prometheus") == pid  # reloaded in place
    assert "scrape_interval: 2s" in _loaded_config(url)

    second = tmp_path / "b" / "prometheus.yml"
    second.parent.mkdir()
    second.write_text("global: {scrape_interval: 3s}\n")
    assert prometheus_service.start_prometheus(second) == url  # same port after the restart
    assert _pid("prometheus") != pid
    assert "scrape_interval: 3s" in _loaded_config(url)

    # A bad file is refused before the running server is touched.
    restarted = _pid("prometheus")
    second.write_text("global: {scrape_interval: not-a-duration}\n")
    with pytest.raises(pytest.fail.Exception, match="not a valid duration"):
        prometheus_service.start_prometheus(second)
    assert _pid("prometheus") == restarted
    assert "scrape_interval: 3s" in _loaded_config(url)


def _pid(name: str) -> int:
    return int(service_script(name, "status").split("pid=")[1].split()[0])


def _loaded_config(url: str) -> str:
    answer = httpx.get(f"{url}/api/v1/status/config")
    answer.raise_for_status()
    yaml: str = answer.json()["data"]["yaml"]
    return yaml
