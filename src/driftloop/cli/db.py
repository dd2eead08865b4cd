"""``driftloop db current|upgrade``: the store's schema revision, and its upgrade to the head."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape

from driftloop.cli.app import ConfigOption, JsonOption, console, load, print_json, sub_app

db_app = sub_app("db", "Show the store's schema revision and upgrade it.")


@db_app.command("current")
def db_current(config_path: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Print the store's schema revision and whether it is this driftloop's head."""
    from driftloop.database.core import UPGRADE_COMMAND, Database

    config = load(config_path)
    database = Database(config.store, base_dir=config.base_dir)
    try:
        status = database.schema_status()
    finally:
        database.dispose()
    if as_json:
        print_json(status.to_dict())
        return
    console.print(f"store:    {escape(status.store)}", highlight=False)
    console.print(f"revision: {escape(status.described)}", highlight=False)
    console.print(f"head:     {status.head}", highlight=False)
    if status.at_head:
        console.print("[green]at head[/]: nothing to upgrade", highlight=False)
    elif status.state == "ahead":
        console.print("[red]newer than this driftloop[/]: upgrade driftloop", highlight=False)
    else:
        stamped = (
            " (it stamps release 1's schema 0001 first)" if status.state == "release-1" else ""
        )
        console.print(f"[yellow]not at head[/]: run '{UPGRADE_COMMAND}'{stamped}", highlight=False)


@db_app.command("upgrade")
def db_upgrade(config_path: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """Upgrade the store's schema to this driftloop's head (creating it in an empty database)."""
    from driftloop.database.core import Database

    config = load(config_path)
    database = Database(config.store, base_dir=config.base_dir)
    try:
        upgrade = database.upgrade()
    finally:
        database.dispose()
    if as_json:
        print_json(upgrade.to_dict())
        return
    store = escape(upgrade.before.store)
    if upgrade.changed:
        console.print(
            f"upgraded {store}: {escape(upgrade.before.described)} → {upgrade.revision}",
            highlight=False,
        )
    else:
        console.print(f"{store} is already at {upgrade.revision} (head)", highlight=False)
