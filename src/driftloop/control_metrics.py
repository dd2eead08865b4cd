"""Prometheus gauges of the control plane: monitor states, open incidents, retrain jobs.

Read from the store at each scrape of ``/metrics`` (so every replica answers the same), by a
:class:`ControlPlaneCollector` that ``driftloop up`` adds to the server's registry:

* ``driftloop_monitor_state{monitor, state}``: 1 for each monitor's worst state over its
  groups, 0 for the other states (a state set: ``max by (monitor)`` of
  ``driftloop_monitor_state{state="ALERT"}`` is 1 while it alerts);
* ``driftloop_monitor_groups{monitor, state}``: how many groups (model versions, say) of a
  monitor are in each state;
* ``driftloop_open_incidents{severity}``: open incidents by severity;
* ``driftloop_retrain_jobs{state}``: retrain jobs in each state;
* ``driftloop_control_plane_up``: 1 when the store answered this scrape, else 0 (and the
  gauges above are left out rather than reported as zeros).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from driftloop.errors import DriftloopError
from driftloop.monitors.engine import MonitorStatus
from driftloop.monitors.events import MonitorState

logger = logging.getLogger(__name__)

SEVERITIES = (MonitorState.WARN.value, MonitorState.ALERT.value)


class ControlPlaneCollector(Collector):
    """Yields the control plane's gauges from three readers of the store."""

    def __init__(
        self,
        monitors: Callable[[], Sequence[MonitorStatus]],
        open_incidents: Callable[[], Mapping[str, int]],
        jobs: Callable[[], Mapping[str, int]],
    ) -> None:
        self._monitors = monitors
        self._open_incidents = open_incidents
        self._jobs = jobs

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "driftloop_control_plane_up",
            "1 when the store answered this scrape of the control plane.",
        )
        try:
            monitors = list(self._monitors())
            incidents = dict(self._open_incidents())
            jobs = dict(self._jobs())
        except (DriftloopError, SQLAlchemyError) as exc:
            logger.warning("control-plane metrics: the store did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        states = [state.value for state in MonitorState]
        worst = GaugeMetricFamily(
            "driftloop_monitor_state",
            "1 for the worst state of each monitor over its groups, 0 for the others.",
            labels=["monitor", "state"],
        )
        groups = GaugeMetricFamily(
            "driftloop_monitor_groups",
            "Groups of each monitor in each state.",
            labels=["monitor", "state"],
        )
        for monitor in monitors:
            current = None if monitor.worst is None else monitor.worst.value
            for state in states:
                worst.add_metric([monitor.name, state], 1 if state == current else 0)
                groups.add_metric(
                    [monitor.name, state], sum(1 for g in monitor.groups if g.state.value == state)
                )
        yield worst
        yield groups
        open_incidents = GaugeMetricFamily(
            "driftloop_open_incidents", "Open incidents by severity.", labels=["severity"]
        )
        for severity in SEVERITIES:
            open_incidents.add_metric([severity], incidents.get(severity, 0))
        yield open_incidents
        retrain_jobs = GaugeMetricFamily(
            "driftloop_retrain_jobs", "Retrain jobs in each state.", labels=["state"]
        )
        for state, count in sorted(jobs.items()):
            retrain_jobs.add_metric([state], count)
        yield retrain_jobs
