"""Notification commands: send a test message through a notifier, read the delivery log."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from driftloop.cli.app import ConfigOption, JsonOption, console, load, print_json, sub_app
from driftloop.timestamps import iso_utc

if TYPE_CHECKING:
    from driftloop.notify.router import NotificationRouter


notify_app = sub_app("notify", "Test notifiers and read the notification delivery log.")


def _router(config_path: Path | None) -> NotificationRouter:
    from driftloop.database.core import open_database
    from driftloop.notify.router import NotificationRouter

    config = load(config_path)
    database = open_database(config.store, base_dir=config.base_dir)
    return NotificationRouter(config, database, require_routes=False)


@notify_app.command("test")
def notify_test(
    name: str = typer.Argument(..., help="Notifier name from 'notifiers:' (or log)."),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Send a test notification through one notifier and print the delivery result."""
    router = _router(config_path)
    try:
        with console.status(f"sending a test notification to @{name} ..."):
            result = router.send_test(name)
    finally:
        router.close()
    if as_json:
        print_json({**asdict(result), "ok": result.ok})
    else:
        colour = "green" if result.ok else "red"
        console.print(
            f"[{colour}]{result.status}[/] @{name} after {result.attempts} "
            f"attempt(s) in {result.duration_ms:.0f} ms",
            highlight=False,
        )
        if result.http_status is not None:
            console.print(f"  http status: {result.http_status}", highlight=False)
        if result.detail:
            console.print(f"  detail: {result.detail}", highlight=False, markup=False)
        if result.error:
            console.print(f"  error: {result.error}", highlight=False, markup=False)
    if not result.ok:
        raise typer.Exit(1)


@notify_app.command("deliveries")
def notify_deliveries(
    event: str | None = typer.Option(None, "--event", help="Only this event id."),
    notifier: str | None = typer.Option(None, "--notifier", help="Only this notifier."),
    limit: int = typer.Option(50, "--limit", min=1, help="How many attempts to show."),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """List recent delivery attempts, newest first."""
    router = _router(config_path)
    try:
        attempts = router.deliveries(event_id=event, notifier=notifier, limit=limit)
    finally:
        router.close()
    if as_json:
        print_json([{**asdict(a), "created_at": iso_utc(a.created_at)} for a in attempts])
        return
    if not attempts:
        console.print("no deliveries yet")
        return
    for a in attempts:
        http = "" if a.http_status is None else f" http {a.http_status}"
        why = f" {a.error}" if a.error else (f" {a.detail}" if a.detail else "")
        console.print(
            f"{a.event_id} @{a.notifier} #{a.attempt} {a.status}{http} {a.duration_ms:.0f}ms{why}",
            highlight=False,
            markup=False,
        )
