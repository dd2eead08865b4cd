"""Incidents opened from outside, timelines other components append to, and lookups."""

from __future__ import annotations

import pytest

from driftloop.database import Database
from driftloop.errors import InvalidInputError, NotFoundError
from driftloop.monitors.incidents import IncidentStatus, IncidentStore
from driftloop.testing.clock import ManualClock


def test_external_incident_with_timeline(database: Database) -> None:
    clock = ManualClock(1000.0)
    store = IncidentStore(database, clock=clock)
    incident_id = store.open_external_incident(
        "alertmanager", "review-classifier", "ConfidenceLow firing", {"labels": {"sev": "page"}}
    )
    clock.now = 1010.0
    store.add_timeline_entry(incident_id, "notified", "sent to #mlops", {"notifier": "slack"})
    clock.now = 1020.0
    store.add_timeline_entry(incident_id, "job started", "retrain job j-1", {"job_id": "j-1"})
    clock.now = 1100.0
    store.resolve_incident(incident_id, "confidence recovered")
    store.resolve_incident(incident_id)  # already resolved: nothing more
    clock.now = 1200.0
    store.add_timeline_entry(incident_id, "deployed", "deployed v2", {"version": 2})

    incident = store.get_incident(incident_id)
    assert (incident.source, incident.model, incident.title) == (
        "alertmanager",
        "review-classifier",
        "ConfidenceLow firing",
    )
    assert incident.details == {"labels": {"sev": "page"}}
    assert (incident.status, incident.opened_at, incident.resolved_at) == (
        IncidentStatus.RESOLVED,
        1000.0,
        1100.0,
    )
    assert [(e.timestamp, e.kind) for e in incident.timeline] == [
        (1000.0, "opened"),
        (1010.0, "notified"),
        (1020.0, "job started"),
        (1100.0, "resolved"),
        (1200.0, "deployed"),
    ]
    assert incident.timeline[2].data == {"job_id": "j-1"}
    assert incident.to_dict()["timeline"][4]["message"] == "deployed v2"


def test_dedupe_key_reuses_the_open_incident(database: Database) -> None:
    store = IncidentStore(database, clock=lambda: 5.0)
    first = store.open_external_incident("datadog", "m", "monitor 42", dedupe_key="42")
    assert store.open_external_incident("datadog", "m", "monitor 42", dedupe_key="42") == first
    assert store.open_external_incident("alertmanager", "m", "x", dedupe_key="42") != first
    store.resolve_incident(first)
    assert store.open_external_incident("datadog", "m", "monitor 42", dedupe_key="42") != first


def test_listing_and_errors(database: Database) -> None:
    now = [0.0]
    store = IncidentStore(database, clock=lambda: now[0])
    ids = []
    for model in ("a", "b", "a"):
        now[0] += 10
        ids.append(store.open_external_incident("datadog", model, f"{model} low"))
    store.resolve_incident(ids[0])
    assert [i.incident_id for i in store.list_incidents()] == ids[::-1]
    assert [i.incident_id for i in store.list_incidents(model="a")] == [ids[2], ids[0]]
    assert [i.incident_id for i in store.list_incidents(status="open")] == [ids[2], ids[1]]
    assert [i.incident_id for i in store.list_incidents(IncidentStatus.RESOLVED)] == [ids[0]]
    assert store.list_incidents()[0].timeline == ()
    with pytest.raises(InvalidInputError, match="unknown incident status"):
        store.list_incidents(status="closed")
    with pytest.raises(NotFoundError, match="no incident 'inc-nope'"):
        store.get_incident("inc-nope")
    with pytest.raises(NotFoundError):
        store.add_timeline_entry("inc-nope", "notified", "x")
    with pytest.raises(InvalidInputError, match="title"):
        store.open_external_incident("datadog", None, " ")
    with pytest.raises(InvalidInputError, match="JSON object"):
        store.add_timeline_entry(ids[1], "notified", "x", ["not", "a mapping"])  # type: ignore[arg-type]
    assert len(store.get_incident(ids[1]).timeline) == 1  # the bad entry was not written
