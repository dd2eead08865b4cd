"""The demo's live view: what it gathers from the monitors' events for the summary."""

from __future__ import annotations

from driftloop.demo.config import DemoOptions
from driftloop.demo.tabular.project import FEATURE_MONITOR
from driftloop.demo.view import DemoView
from driftloop.monitors.events import Event, MonitorState


def event(monitor: str, state: MonitorState, drifted: list[str] | None = None) -> Event:
    return Event(
        event_id=f"evt-{monitor}-{state.value}",
        monitor=monitor,
        group={"model": "segment-classifier", "version": "1"},
        previous=MonitorState.OK,
        state=state,
        value=None,
        threshold=None,
        timestamp=1_700_000_000.0,
        incident_id="inc-1",
        message="drifted",
        details={} if drifted is None else {"drifted_features": drifted},
    )


def test_the_view_gathers_the_drifted_features_in_the_order_they_were_found() -> None:
    view = DemoView(DemoOptions(scenario="tabular"))
    view.on_event(event(FEATURE_MONITOR, MonitorState.WARN, ["region-centroid-row"]))
    view.on_event(event("segment-classifier confidence", MonitorState.ALERT))
    view.on_event(event(FEATURE_MONITOR, MonitorState.ALERT, ["hue-mean", "region-centroid-row"]))
    assert view.drifted_features == ["region-centroid-row", "hue-mean"]
    assert view.first(MonitorState.ALERT.value, f"{FEATURE_MONITOR}:") is not None
    assert view.first(MonitorState.WARN.value, "segment-classifier confidence") is None
