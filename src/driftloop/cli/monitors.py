"""``driftloop monitors ls|status|history``: configured monitors, their states now, their past."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from driftloop.cli.app import ConfigOption, JsonOption, console, load, print_json, sub_app
from driftloop.timestamps import text_utc

if TYPE_CHECKING:
    from driftloop.config import Config
    from driftloop.database import Database
    from driftloop.monitors.history import MonitorStateStore, MonitorStatus
    from driftloop.monitors.incidents import Incident, IncidentStore


monitors_app = sub_app("monitors", "List monitors, evaluate them now, show their history.")

_STYLE = {"OK": "green", "WARN": "yellow", "ALERT": "bold red", "NO_DATA": "dim"}


class StoredMonitors:
    """What the store holds of the monitors (their states, events and incidents), read through
    the stores the monitor engine writes with, without the engine: reading evaluates nothing,
    so it imports neither numpy nor the metric store (``status``, ``monitors ls|history``)."""

    def __init__(self, config: Config) -> None:
        from driftloop.database import open_database
        from driftloop.monitors.history import MonitorStateStore
        from driftloop.monitors.incidents import IncidentStore

        self.config = config
        self.database: Database = open_database(config.store, base_dir=config.base_dir)
        self.states: MonitorStateStore = MonitorStateStore(self.database)
        self.incidents: IncidentStore = IncidentStore(self.database)

    def status(self) -> list[MonitorStatus]:
        """The stored state of every configured monitor (no evaluation, so no errors)."""
        from driftloop.monitors.status import monitor_statuses

        return monitor_statuses({m.name: m for m in self.config.monitors}, self.states, {})


def _time(timestamp: float | None) -> str:
    return text_utc(timestamp, missing="-")


def _group(group: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(group.items())) or "all"


def _state(state: str | None) -> str:
    if state is None:
        return "-"
    return f"[{_STYLE.get(state, 'white')}]{state}[/]"


@monitors_app.command("ls")
def monitors_ls(config_path: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """List the configured monitors and their last known state."""
    config = load(config_path)
    statuses = {s.name: s for s in StoredMonitors(config).status()}
    rows = [
        {
            "name": m.name,
            "type": m.type,
            "metric": m.metric,
            "aggregation": m.aggregation,
            "window": m.window,
            "group_by": list(m.group_by),
            "below": None if m.below is None else m.below.model_dump(),
            "above": None if m.above is None else m.above.model_dump(),
            "state": None if statuses[m.name].worst is None else str(statuses[m.name].worst),
            "groups": len(statuses[m.name].groups),
        }
        for m in config.monitors
    ]
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no monitors configured (add them under 'monitors:' in driftloop.yaml)")
        return
    table = Table("monitor", "type", "metric", "window", "group by", "groups", "state")
    for row, monitor in zip(rows, config.monitors, strict=True):
        table.add_row(
            monitor.name,
            monitor.type,
            f"{monitor.aggregation}({monitor.metric})",
            f"{monitor.window:g}s",
            ", ".join(monitor.group_by) or "-",
            str(row["groups"]),
            _state(row["state"]),  # type: ignore[arg-type]
        )
    console.print(table)


@monitors_app.command("status")
def monitors_status(
    config_path: Path | None = ConfigOption,
    monitor: str | None = typer.Option(None, "--monitor", "-m", help="Show only this monitor."),
    as_json: bool = JsonOption,
) -> None:
    """Evaluate every monitor now and show the state of each group."""
    from driftloop.messages import format_value
    from driftloop.monitors.history import event_to_dict
    from driftloop.system import DriftloopSystem

    config = load(config_path)
    # the engine 'driftloop up' runs, with its references, detectors, served versions and
    # notifications: a transition found here is notified once, whoever finds it first
    engine = DriftloopSystem(config).engine
    if as_json or not console.is_terminal:  # a transient bar draws nothing off a terminal
        events = engine.evaluate()
    else:
        from rich.progress import Progress

        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("evaluating monitors", total=len(config.monitors))
            events = engine.evaluate(
                progress=lambda done, total: progress.update(task, completed=done, total=total)
            )
    statuses = engine.status(monitor)
    if as_json:
        print_json(
            {
                "monitors": [s.to_dict() for s in statuses],
                "events": [event_to_dict(e) for e in events],
            }
        )
        return
    table = Table("monitor", "group", "state", "value", "threshold", "since", "incident")
    for status in statuses:
        if status.error:
            table.add_row(status.name, "-", "[red]error[/]", escape(status.error), "", "", "")
        if not status.groups:
            table.add_row(status.name, "-", "no data yet", "", "", "", "")
        for group in status.groups:
            table.add_row(
                status.name,
                _group(group.group),
                _state(str(group.state))
                + escape(f" (drifted: {', '.join(group.drifted_features or ())})")
                * bool(group.drifted_features),
                format_value(group.value),
                format_value(group.threshold),
                _time(group.since),
                group.incident_id or "",
            )
    console.print(table)
    for event in events:
        console.print(
            f"{_state(str(event.state))} {event.monitor} "
            f"{escape(f'[{_group(dict(event.group))}]: {event.message}')}",
            highlight=False,
        )


@monitors_app.command("history")
def monitors_history(
    config_path: Path | None = ConfigOption,
    monitor: str | None = typer.Option(None, "--monitor", "-m", help="Only this monitor."),
    model: str | None = typer.Option(None, "--model", help="Only this model."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="How many, newest first."),
    incidents: bool = typer.Option(False, "--incidents", help="List incidents, not events."),
    incident: str | None = typer.Option(
        None, "--incident", help="Show one incident with its timeline."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Show past events, or incidents and their timelines."""
    stored = StoredMonitors(load(config_path))
    if incident is not None:
        _show_incident(stored.incidents, incident, as_json)
    elif incidents:
        listed = stored.incidents.list_incidents(None, model, limit=limit)
        _show_incidents([i for i in listed if monitor is None or i.monitor == monitor], as_json)
    else:
        _show_events(stored.states, monitor, model, limit, as_json)


def _show_incident(store: IncidentStore, incident_id: str, as_json: bool) -> None:
    found = store.get_incident(incident_id)
    if as_json:
        print_json(found.to_dict())
        return
    console.print(
        f"[bold]{found.incident_id}[/] {escape(found.title)} ({found.status}, "
        f"{found.severity}, opened {_time(found.opened_at)})",
        highlight=False,
    )
    for entry in found.timeline:
        console.print(
            f"  {_time(entry.timestamp)}  {entry.kind:<14} {entry.message}",
            highlight=False,
            markup=False,
        )


def _show_incidents(listed: list[Incident], as_json: bool) -> None:
    if as_json:
        print_json([i.to_dict() for i in listed])
        return
    table = Table("incident", "status", "severity", "opened", "resolved", "title")
    for item in listed:
        table.add_row(
            item.incident_id,
            str(item.status),
            item.severity,
            _time(item.opened_at),
            _time(item.resolved_at),
            escape(item.title),
        )
    console.print(table)


def _show_events(
    states: MonitorStateStore, monitor: str | None, model: str | None, limit: int, as_json: bool
) -> None:
    from driftloop.messages import format_value
    from driftloop.monitors.history import event_to_dict

    events = states.list_events(monitor=monitor, model=model, limit=limit)
    if as_json:
        print_json([event_to_dict(e) for e in events])
        return
    table = Table("time", "monitor", "group", "change", "value", "message")
    for event in events:
        change = f"{event.previous} → {event.state}" + (" (again)" if event.renotification else "")
        table.add_row(
            _time(event.timestamp),
            event.monitor,
            escape(_group(dict(event.group))),
            change,
            format_value(event.value),
            escape(event.message),
        )
    console.print(table)
