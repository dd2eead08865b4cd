"""The monitors JSON API, mounted in the serving app behind an admin key as the system mounts
it."""

from __future__ import annotations

from fastapi.testclient import TestClient

from driftloop.config import Config
from driftloop.database import Database
from driftloop.metrics.points import MetricPoint
from driftloop.metrics.sql import SqlMetricStore
from driftloop.monitors.api import monitors_router
from driftloop.monitors.engine import MonitorEngine
from driftloop.serving import ApiKeyStore, Scope
from driftloop.timestamps import iso_utc
from serving.mounted import admin_api, mounted_app
from timeformat import iso_times

T0 = 1_699_999_980.0


def test_states_history_and_incidents(database: Database) -> None:
    config = Config.model_validate(
        {
            "monitors": [
                {
                    "name": "confidence",
                    "below": {"warning": 0.8, "critical": 0.7},
                    "message": "{{model}} at {{value}} {{#is_alert}}@log{{/is_alert}}",
                }
            ]
        }
    )
    store = SqlMetricStore(database, raw_retention=86400, rollup_retention=86400 * 30)
    now = [T0]
    engine = MonitorEngine(config, database, store, clock=lambda: now[0])
    store.write(
        [MetricPoint("model_confidence", 0.5, T0 - 10 * i, {"model": "m1"}) for i in range(1, 30)]
    )
    api_keys = ApiKeyStore(database)
    app = mounted_app(database, admin_api(monitors_router(engine)), api_keys=api_keys)
    client = TestClient(app, headers={"X-API-Key": api_keys.create(Scope.ADMIN).key})

    listing = client.get("/v1/monitors")
    assert listing.status_code == 200
    assert listing.json()[0]["name"] == "confidence"
    assert listing.json()[0]["groups"] == []

    evaluated = client.post("/v1/monitors/evaluate").json()
    assert [(e["state"], e["model"], e["handles"]) for e in evaluated] == [("ALERT", "m1", ["log"])]
    assert evaluated[0]["message"] == "m1 at 0.5 @log"

    one = client.get("/v1/monitors/confidence").json()
    assert one["state"] == "ALERT"
    assert one["groups"][0]["group"] == {"model": "m1"}
    assert one["groups"][0]["value"] == 0.5

    history = client.get("/v1/monitors/confidence/history").json()
    assert [e["event_id"] for e in history] == [evaluated[0]["event_id"]]
    # the moments in an event's details are ISO 8601 UTC too (#21 part 5)
    window = {key: history[0]["details"][key] for key in ("window_start", "window_end")}
    assert window == {"window_start": iso_utc(T0 - 300), "window_end": iso_utc(T0)}
    assert {"$[0].timestamp"} <= set(iso_times(history))
    assert client.get("/v1/events", params={"model": "other"}).json() == []

    incidents = client.get("/v1/incidents", params={"status": "open"}).json()
    assert [i["incident_id"] for i in incidents] == [evaluated[0]["incident_id"]]
    detail = client.get(f"/v1/incidents/{incidents[0]['incident_id']}").json()
    assert [e["kind"] for e in detail["timeline"]] == ["opened", "state_change"]

    for path, says in [
        ("/v1/monitors/nope", "no monitor 'nope'"),
        ("/v1/monitors/nope/history", "no monitor 'nope'"),
        ("/v1/incidents/inc-nope", "inc-nope"),
    ]:
        missing = client.get(path)
        assert missing.status_code == 404, path
        assert missing.json()["error"]["type"] == "NotFoundError", path
        assert says in missing.json()["error"]["message"], missing.json()
    bad = client.get("/v1/incidents", params={"status": "closed"})
    assert bad.status_code == 422
    assert bad.json()["error"]["type"] == "InvalidInputError"
    assert "unknown incident status" in bad.json()["error"]["message"]
    now[0] = T0 + 3600  # no data for an hour: NO_DATA says when data was last seen
    (no_data,) = client.post("/v1/monitors/evaluate").json()
    assert no_data["state"] == "NO_DATA"
    assert "$.details.last_data_at" in iso_times(no_data)
