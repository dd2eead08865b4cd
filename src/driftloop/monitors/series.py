"""Which metric series a monitor reads."""

from __future__ import annotations

from driftloop.config import MonitorConfig
from driftloop.metrics.points import SHADOW_TAG, TagFilter


def series_filter(monitor: MonitorConfig) -> TagFilter:
    """The series ``monitor`` reads (its evaluations, graphs and notifications alike): its
    ``filter``, and production traffic only. A shadow version's insights count for a monitor
    that names the ``shadow`` tag and for no other: during a shadow rollout they would double
    the traffic and blend the candidate's confidence into production's."""
    if SHADOW_TAG in monitor.filter:
        return monitor.filter
    return {**monitor.filter, SHADOW_TAG: None}
