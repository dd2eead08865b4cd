"""What one :meth:`~driftloop.monitors.engine.MonitorEngine.evaluate` call reads once and
changes (written in one transaction), and the reference-profile keys that tell the engine's
drift detectors when a group's reference changed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection

from driftloop.config import MonitorConfig
from driftloop.metrics.points import AggregateResult, MetricStore
from driftloop.monitors.events import Event
from driftloop.monitors.history import GroupState, group_key
from driftloop.monitors.series import series_filter
from driftloop.predictors import ReferenceProfile

ReferenceProvider = Callable[[Mapping[str, str]], ReferenceProfile | None]
"""The reference profile of the model a group is about (``{"model": "..."}``), or ``None``."""

ServedVersions = Callable[[str], Collection[str] | None]
"""For a model name, the versions (as ``version`` tag values) it serves now, or None when that
is not known."""

REFERENCE_CACHE_SIZE = 256


@dataclass
class EvaluationRun:
    """What one evaluation changes, and what it asked once for every monitor."""

    now: float
    touched: list[GroupState] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    incident_ops: list[Callable[[Connection], object]] = field(default_factory=list)
    references: dict[str, ReferenceProfile | None] = field(default_factory=dict)
    queries: dict[tuple[object, ...], list[AggregateResult]] = field(default_factory=dict)
    served: dict[str, Collection[str] | None] = field(default_factory=dict)
    """Per model, the versions it serves (asked once per evaluation)."""
    retired: list[GroupState] = field(default_factory=list)
    """Groups of versions no longer served: their rows are deleted."""

    def group_state(
        self,
        monitor: MonitorConfig,
        key: str,
        group: Mapping[str, str],
        states: dict[str, GroupState],
    ) -> GroupState:
        """The group's state (a new one, OK since now, for a group not seen before), marked as
        evaluated now and to be saved."""
        state = states.get(key)
        if state is None:
            state = GroupState(monitor=monitor.name, group=dict(group), since=self.now)
            states[key] = state
        state.last_evaluated = self.now
        self.touched.append(state)
        return state

    def reference(
        self, group: Mapping[str, str], provider: ReferenceProvider | None
    ) -> ReferenceProfile | None:
        """The group's reference profile, asked of ``provider`` once per run."""
        if provider is None:
            return None
        key = group_key(group)
        if key not in self.references:
            self.references[key] = provider(group)
        return self.references[key]

    def aggregate(
        self, store: MetricStore, monitor: MonitorConfig, start: float, end: float
    ) -> list[AggregateResult]:
        """``monitor``'s metric aggregated per group over ``[start, end)``: monitors that differ
        only in thresholds share one query per run."""
        query_key = (
            monitor.metric,
            monitor.aggregation,
            start,
            end,
            tuple(sorted(monitor.filter.items())),
            tuple(monitor.group_by),
        )
        results = self.queries.get(query_key)
        if results is None:
            results = store.query(
                monitor.metric,
                monitor.aggregation,
                start,
                end,
                filter=series_filter(monitor),
                group_by=monitor.group_by,
            )
            self.queries[query_key] = results
        return results

    def served_by(self, model: str, provider: ServedVersions) -> Collection[str] | None:
        """The versions ``model`` serves, asked of ``provider`` once per run."""
        if model not in self.served:
            self.served[model] = provider(model)
        return self.served[model]


class ReferenceKeys:
    """A short content hash per reference profile, remembered for the last
    :data:`REFERENCE_CACHE_SIZE` profile objects (hashing one serialises all of it)."""

    def __init__(self) -> None:
        self._keys: dict[int, tuple[ReferenceProfile, str]] = {}

    def key(self, profile: ReferenceProfile | None) -> str | None:
        if profile is None:
            return None
        cached = self._keys.get(id(profile))
        if cached is not None and cached[0] is profile:
            return cached[1]
        text = json.dumps(profile.to_dict(), sort_keys=True, default=str)
        key = hashlib.sha256(text.encode()).hexdigest()[:32]
        if len(self._keys) >= REFERENCE_CACHE_SIZE:
            self._keys.pop(next(iter(self._keys)))
        self._keys[id(profile)] = (profile, key)
        return key
