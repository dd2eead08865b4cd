"""The shipped deploy/ Prometheus and Alertmanager files against the real servers: Prometheus
scrapes a running DriftloopSystem app, the confidence rule fires, Alertmanager's webhook (with
the bearer secret) reaches ``POST /v1/hooks/alert``, which opens an incident and queues a
retrain."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from driftloop.serving.keys import Scope
from pipeline.world import MODEL, PipelineWorld

from .conftest import AppServer

pytestmark = pytest.mark.prometheus

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SECRET = "alertmanager-shares-this-secret"
TEXTS = [
    "the sound quality is muddy and the case cracked",
    "a tense, well acted thriller",
    "runs small, order a size up",
    "the battery died after a week",
]


def shipped(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / name).read_text())
    return document


def test_the_shipped_files_pass_promtool_and_amtool() -> None:
    import subprocess

    for command in (
        ["promtool", "check", "config", str(DEPLOY / "prometheus.yml")],
        ["promtool", "check", "rules", str(DEPLOY / "rules" / "driftloop.yml")],
        ["amtool", "check-config", str(DEPLOY / "alertmanager.yml")],
    ):
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


PANELS_WITH_DATA = {
    "Traffic: predictions per second",
    "Mean model confidence",
    "Request latency (p50, p99)",
    "Error rate (5xx share of requests)",
    "Insight points per second",
    "Monitor states",
    "Retrain jobs by state",
    "Open incidents",
    "Served version",
    "Monitors in ALERT",
}
"""Panels that show something as soon as the app serves traffic (hot swaps need a swap)."""


def grafana_panels() -> list[tuple[str, list[str]]]:
    """Each panel of the shipped Grafana dashboard with its PromQL, Grafana's variables filled
    in as Grafana would (``$model`` = all models, the rate interval = 30 s)."""
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "driftloop.json").read_text())
    return [
        (
            panel["title"],
            [
                target["expr"].replace("$__rate_interval", "30s").replace("$model", ".*")
                for target in panel["targets"]
            ],
        )
        for panel in dashboard["panels"]
    ]


def test_the_grafana_dashboard_is_provisioned_by_the_compose_file() -> None:
    compose = shipped("docker-compose.yml")
    grafana = compose["services"]["grafana"]
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in grafana["volumes"]}
    provider = shipped("grafana/provisioning/dashboards/driftloop.yml")["providers"][0]
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    [source] = shipped("grafana/provisioning/datasources/prometheus.yml")["datasources"]
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in compose["services"]
    titles = [title for title, _ in grafana_panels()]
    assert len(titles) == len(set(titles))


def render_rules(directory: Path, threshold: float) -> None:
    """The shipped rules with test-sized windows: 30 s ranges, no ``for`` delay, and a
    threshold above the small test model's mean confidence."""
    rules = shipped("rules/driftloop.yml")
    [group] = rules["groups"]
    [confidence] = [r for r in group["rules"] if r["alert"] == "DriftloopModelConfidenceLow"]
    assert "< 0.7" in confidence["expr"]
    confidence["expr"] = (
        confidence["expr"].replace("[10m]", "[30s]").replace("< 0.7", f"< {threshold}")
    )
    confidence["for"] = "0s"
    (directory / "rules").mkdir()
    (directory / "rules" / "driftloop.yml").write_text(yaml.safe_dump(rules))


# One end-to-end story (Prometheus → Alertmanager → hook → job), told in order.
def test_prometheus_alert_reaches_the_inbound_hook_and_queues_a_retrain(  # noqa: PLR0915
    prometheus_service: Any, tmp_path: Path
) -> None:
    (tmp_path / "project").mkdir()
    world = PipelineWorld.create(
        tmp_path / "project", extra={"hooks": {"secret": SECRET, "signature": "legacy"}}
    )
    world.train_production()
    system = world.system
    key = system.api_keys.create(Scope.PREDICT, name="traffic").key

    with AppServer(system.create_app(poll=False)) as app:
        # Alertmanager: the shipped routing, the webhook pointed at this app, the bearer
        # secret read from a file as in production
        secret_file = tmp_path / "hook-secret"
        secret_file.write_text(SECRET)
        alertmanager = shipped("alertmanager.yml")
        alertmanager["route"].update(group_wait="1s", group_interval="1s")
        [hook] = next(r for r in alertmanager["receivers"] if r["name"] == "driftloop")[
            "webhook_configs"
        ]
        assert hook["url"].endswith("/v1/hooks/alert")
        hook["url"] = f"{app.url}/v1/hooks/alert"
        hook["http_config"]["authorization"]["credentials_file"] = str(secret_file)
        (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager))
        alertmanager_url = prometheus_service.start_alertmanager(tmp_path / "alertmanager.yml")

        # Prometheus: the shipped config, scraping this app every second
        render_rules(tmp_path, threshold=0.99)
        prometheus = shipped("prometheus.yml")
        prometheus["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        prometheus["alerting"]["alertmanagers"][0]["static_configs"] = [
            {"targets": [alertmanager_url.removeprefix("http://")]}
        ]
        prometheus["scrape_configs"] = [
            {
                **prometheus["scrape_configs"][0],
                "static_configs": [{"targets": [f"127.0.0.1:{app.port}"]}],
            }
        ]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prometheus))
        prometheus_url = prometheus_service.start_prometheus(tmp_path / "prometheus.yml")

        stop = threading.Event()
        answered: list[float] = []

        def traffic() -> None:
            with httpx.Client(
                base_url=app.url, headers={"Authorization": f"Bearer {key}"}, timeout=10
            ) as client:
                while not stop.is_set():
                    answer = client.post(f"/v1/models/{MODEL}/predict", json={"texts": TEXTS})
                    answer.raise_for_status()
                    answered.extend(p["confidence"] for p in answer.json()["predictions"])
                    stop.wait(0.1)

        sender = threading.Thread(target=traffic, daemon=True)
        sender.start()
        try:
            deadline = time.monotonic() + 90
            incidents: list[Any] = []
            while not incidents and time.monotonic() < deadline:
                time.sleep(0.5)
                incidents = [
                    i
                    for i in system.engine.list_incidents(status="open")
                    if i.source == "alertmanager"
                ]
            scraped = httpx.get(
                f"{prometheus_url}/api/v1/query",
                params={"query": f'driftloop_model_confidence_count{{model="{MODEL}"}}'},
            ).json()
            panels = {
                title: [
                    httpx.get(f"{prometheus_url}/api/v1/query", params={"query": expr}).json()
                    for expr in exprs
                ]
                for title, exprs in grafana_panels()
            }
        finally:
            stop.set()
            sender.join(timeout=10)

    assert answered, "no prediction was answered"
    assert sum(answered) / len(answered) < 0.99
    assert scraped["data"]["result"], scraped  # Prometheus scraped the app's histogram
    assert float(scraped["data"]["result"][0]["value"][1]) > 0
    for title, answers in panels.items():  # every Grafana query runs on the real server
        for answer in answers:
            assert answer["status"] == "success", (title, answer)
        if title in PANELS_WITH_DATA:
            assert all(answer["data"]["result"] for answer in answers), (title, answers)
    assert set(panels) >= PANELS_WITH_DATA
    assert incidents, "Alertmanager's webhook never opened an incident"
    [incident] = incidents
    assert incident.model == MODEL
    assert incident.details["labels"]["alertname"] == "DriftloopModelConfidenceLow"
    assert incident.details["labels"]["severity"] == "critical"
    [job] = system.queue.list(model=MODEL)
    assert job.incident_id == incident.incident_id
    assert "alertmanager alert" in job.reason
