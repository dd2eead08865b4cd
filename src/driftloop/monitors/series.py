"""Which metric series a monitor reads."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from driftloop.config import MonitorConfig
from driftloop.metrics.points import SHADOW_TAG, MetricPoint, TagFilter
from driftloop.monitors.history import group_key


def series_filter(monitor: MonitorConfig) -> TagFilter:
    """The series ``monitor`` reads (its evaluations, graphs and notifications alike): its
    ``filter``, and production traffic only. A shadow version's insights count for a monitor
    that names the ``shadow`` tag and for no other: during a shadow rollout they would double
    the traffic and blend the candidate's confidence into production's."""
    if SHADOW_TAG in monitor.filter:
        return monitor.filter
    return {**monitor.filter, SHADOW_TAG: None}


def group_points(
    points: Iterable[MetricPoint], group_by: Sequence[str]
) -> tuple[dict[str, list[MetricPoint]], dict[str, dict[str, str]]]:
    """``points`` per group key (points missing a ``group_by`` tag are left out), and each
    key's group (its ``group_by`` tags)."""
    by_group: dict[str, list[MetricPoint]] = {}
    groups: dict[str, dict[str, str]] = {}
    for point in points:
        values = [point.tags.get(tag) for tag in group_by]
        if any(v is None for v in values):
            continue
        group = {tag: str(v) for tag, v in zip(group_by, values, strict=True)}
        key = group_key(group)
        groups.setdefault(key, group)
        by_group.setdefault(key, []).append(point)
    return by_group, groups
