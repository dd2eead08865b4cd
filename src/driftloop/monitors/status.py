"""The monitors' current states as ``driftloop monitors status`` and ``GET /v1/monitors`` show
them: read from the stored group states, without evaluating."""

from __future__ import annotations

from collections.abc import Mapping

from driftloop.config import MonitorConfig
from driftloop.errors import NotFoundError
from driftloop.monitors.history import MonitorStateStore, MonitorStatus


def monitor_statuses(
    monitors: Mapping[str, MonitorConfig],
    state_store: MonitorStateStore,
    errors: Mapping[str, str],
    monitor: str | None = None,
) -> list[MonitorStatus]:
    """Every configured monitor (or ``monitor`` alone) with its groups' stored states and the
    last evaluation's error, if it failed."""
    if monitor is not None and monitor not in monitors:
        raise NotFoundError(f"no monitor {monitor!r}; configured: {sorted(monitors) or 'none'}")
    states = state_store.load_states(monitor)
    result: list[MonitorStatus] = []
    for config in monitors.values():
        if monitor is not None and config.name != monitor:
            continue
        groups = sorted(
            (s for (name, _), s in states.items() if name == config.name),
            key=lambda s: s.group_key,
        )
        result.append(
            MonitorStatus(
                name=config.name,
                type=config.type,
                metric=config.metric,
                aggregation=config.aggregation,
                window=config.window,
                groups=tuple(groups),
                error=errors.get(config.name),
            )
        )
    return result
