"""The JSON API of the monitors: states, history and incidents. The serving app mounts the router
built here; everything it needs comes in as arguments (no global state).

``GET /monitors``                       every monitor with the state of each group
``GET /monitors/{name}``                one monitor
``GET /monitors/{name}/history``        its events, newest first
``POST /monitors/evaluate``             evaluate every monitor now; the events it produced
``GET /events``                         events (``monitor``, ``model``, ``since``, ``limit``)
``GET /incidents``                      incidents (``status``, ``model``, ``limit``), newest first
``GET /incidents/{incident_id}``        one incident with its timeline

The routes raise driftloop's errors (an unknown monitor or incident is a ``NotFoundError``); the
app's error boundary (:mod:`driftloop.serving.errors`) answers them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from driftloop.monitors.engine import MonitorEngine
from driftloop.monitors.history import event_to_dict
from driftloop.timestamps import parse_moment


class GroupStateModel(BaseModel):
    monitor: str
    group: dict[str, str]
    state: str
    since: str
    value: float | None
    threshold: float | None
    last_evaluated: str | None
    last_data_at: str | None
    last_notified: str | None
    first_seen: str | None
    incident_id: str | None
    reference_key: str | None
    cursor: str | None


class MonitorStatusModel(BaseModel):
    name: str
    type: str
    metric: str
    aggregation: str
    window: float
    state: str | None
    error: str | None
    groups: list[GroupStateModel]


class EventModel(BaseModel):
    event_id: str
    monitor: str
    group: dict[str, str]
    model: str | None
    previous: str
    state: str
    value: float | None
    threshold: float | None
    timestamp: str
    incident_id: str | None
    message: str
    handles: list[str]
    renotification: bool
    is_recovery: bool
    details: dict[str, Any]


class IncidentEntryModel(BaseModel):
    entry_id: int
    incident_id: str
    timestamp: str
    kind: str
    message: str
    data: dict[str, Any]


class IncidentModel(BaseModel):
    incident_id: str
    source: str
    monitor: str | None
    group: dict[str, str]
    model: str | None
    title: str
    status: str
    severity: str
    opened_at: str
    resolved_at: str | None
    details: dict[str, Any]
    timeline: list[IncidentEntryModel]


def monitors_router(engine: MonitorEngine) -> APIRouter:
    """The monitors API on one engine. Long because it is a router factory: each nested function
    is one short route over ``engine``."""
    router = APIRouter(tags=["monitors"])

    @router.get("/monitors", response_model=list[MonitorStatusModel])
    def list_monitors() -> list[dict[str, Any]]:
        """Every configured monitor with the stored state of each group."""
        return [status.to_dict() for status in engine.status()]

    @router.post("/monitors/evaluate", response_model=list[EventModel])
    def evaluate_monitors() -> list[dict[str, Any]]:
        """Evaluate every monitor now; the events (transitions, renotifications) it produced."""
        return [event_to_dict(event) for event in engine.evaluate()]

    @router.get("/monitors/{name}", response_model=MonitorStatusModel)
    def get_monitor(name: str) -> dict[str, Any]:
        """One monitor with the stored state of each group."""
        [status] = engine.status(name)
        return status.to_dict()

    @router.get("/monitors/{name}/history", response_model=list[EventModel])
    def monitor_history(
        name: str, limit: int = Query(100, ge=1, le=10_000)
    ) -> list[dict[str, Any]]:
        """The monitor's events, newest first."""
        engine.status(name)  # NotFoundError for an unknown monitor
        return [event_to_dict(e) for e in engine.history(monitor=name, limit=limit)]

    @router.get("/events", response_model=list[EventModel])
    def list_events(
        monitor: str | None = None,
        model: str | None = None,
        since: str | None = Query(
            None,
            max_length=64,
            description=(
                "only events at or after this moment: ISO 8601 (as the bodies write times) or "
                "seconds since the epoch"
            ),
        ),
        limit: int = Query(100, ge=1, le=10_000),
    ) -> list[dict[str, Any]]:
        """Events of every monitor, newest first."""
        start = None if since is None else parse_moment(since, "since")
        events = engine.history(monitor=monitor, model=model, since=start, limit=limit)
        return [event_to_dict(e) for e in events]

    @router.get("/incidents", response_model=list[IncidentModel])
    def list_incidents(
        status: str | None = None,
        model: str | None = None,
        limit: int = Query(100, ge=1, le=10_000),
    ) -> list[dict[str, Any]]:
        """Incidents, newest first (without timelines)."""
        found = engine.list_incidents(status, model, limit=limit)
        return [incident.to_dict() for incident in found]

    @router.get("/incidents/{incident_id}", response_model=IncidentModel)
    def get_incident(incident_id: str) -> dict[str, Any]:
        """One incident with its timeline, oldest entry first."""
        return engine.get_incident(incident_id).to_dict()

    return router
