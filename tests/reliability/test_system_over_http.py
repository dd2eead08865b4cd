"""The whole loop's app over HTTP: ``driftloop.Client`` (monitors, deploy and rollback through
the real registry, a predict key refused where it has no scope) and the control plane's
Prometheus gauges on ``/metrics``."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from driftloop.client import Client
from driftloop.control_metrics import ControlPlaneCollector
from driftloop.errors import BackendUnavailableError, ForbiddenError
from reliability.conftest import ServedSystem

MODEL = "review-classifier"


def test_monitors_deploy_and_rollback_through_the_registry(served_system: ServedSystem) -> None:
    project = served_system.project
    configured = sorted(monitor.name for monitor in project.config.monitors)
    with Client(served_system.url, project.admin_key) as admin:
        monitors = admin.monitors()
        assert sorted(m.name for m in monitors) == configured
        assert all(m.metric and m.type for m in monitors)
        first, second = project.versions
        assert admin.deploy(MODEL, second.version).version == second.version
        assert project.registry.aliases(MODEL)["production"] == second.version
        assert admin.rollback(MODEL).version == first.version
        assert project.registry.aliases(MODEL)["production"] == first.version
    with (
        Client(served_system.url, project.predict_key) as client,
        pytest.raises(ForbiddenError) as refused,
    ):
        client.monitors()
    assert refused.value.status_code == 403


def gauges(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url + "/metrics", timeout=30).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_expose_monitor_states_open_incidents_and_jobs(served_system: ServedSystem) -> None:
    system = served_system.system
    before = gauges(served_system.url)
    assert before[("driftloop_control_plane_up", ())] == 1
    for monitor in served_system.project.config.monitors:
        states = {
            state: before[
                ("driftloop_monitor_state", (("monitor", monitor.name), ("state", state)))
            ]
            for state in ("OK", "WARN", "ALERT", "NO_DATA")
        }
        assert sum(states.values()) <= 1  # one worst state, or none before any evaluation
    alerts = before[("driftloop_open_incidents", (("severity", "ALERT"),))]
    queued = before[("driftloop_retrain_jobs", (("state", "queued"),))]

    incident = system.engine.incidents.open_external_incident(
        "alertmanager", MODEL, "latency is high"
    )
    system.queue.enqueue(MODEL, incident_id=incident, reason="test", trigger="manual")
    after = gauges(served_system.url)
    assert after[("driftloop_open_incidents", (("severity", "ALERT"),))] == alerts + 1
    assert after[("driftloop_retrain_jobs", (("state", "queued"),))] == queued + 1
    assert after[("driftloop_insights_points_total", (("outcome", "reported"),))] >= 0


def test_a_store_that_does_not_answer_reports_down_not_zeros() -> None:
    def down() -> dict[str, int]:
        raise BackendUnavailableError("store down")

    collector = ControlPlaneCollector(lambda: [], down, lambda: {})
    families = {family.name: family for family in collector.collect()}
    assert list(families) == ["driftloop_control_plane_up"]
    assert families["driftloop_control_plane_up"].samples[0].value == 0
