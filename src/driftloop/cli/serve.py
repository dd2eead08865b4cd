"""Serving commands: ``driftloop serve`` and the API keys it checks (``driftloop keys ...``)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.table import Table

from driftloop.cli.app import ConfigOption, JsonOption, app, console, load, print_json, sub_app
from driftloop.serving.keys import ApiKeyInfo, ApiKeyStore, parse_scope
from driftloop.serving.server import plan_server, run_server
from driftloop.store import open_database


@app.command()
def serve(
    host: str | None = typer.Option(None, "--host", help="Interface to bind (serving.host)."),
    port: int | None = typer.Option(None, "--port", help="Port to listen on (serving.port)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
    config_path: Path | None = ConfigOption,
) -> None:
    """Serve the production version of every configured model over HTTP."""
    config = load(config_path)
    plan = plan_server(config, host=host, port=port, workers=workers, config_path=config_path)
    console.print(f"serving {', '.join(sorted(config.models)) or 'no models'} at "
                  f"[bold]{plan.url}[/] ({plan.workers} worker{'s' if plan.workers > 1 else ''});"
                  f" API docs at {plan.url}/docs")
    run_server(config, plan)


keys_app = sub_app("keys", "Create, list and revoke API keys for the serving API.")


def _store(config_path: Path | None) -> ApiKeyStore:
    config = load(config_path)
    return ApiKeyStore(open_database(config.store, base_dir=config.base_dir))


def _key_dict(info: ApiKeyInfo) -> dict[str, object]:
    return {"key_id": info.key_id, "name": info.name, "scope": info.scope.value,
            "created_at": info.created_at, "revoked_at": info.revoked_at}


def _when(timestamp: float | None) -> str:
    return "" if timestamp is None else time.strftime("%Y-%m-%d %H:%M:%S",
                                                       time.localtime(timestamp))


@keys_app.command("create")
def keys_create(
    scope: str = typer.Option("predict", "--scope", help="predict or admin (admin implies "
                              "predict)."),
    name: str | None = typer.Option(None, "--name", help="A name to recognise the key by."),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    created = _store(config_path).create(parse_scope(scope), name=name)
    if as_json:
        print_json({"key": created.key, **_key_dict(created.info)})
        return
    console.print(f"created {created.info.scope.value} key [bold]{created.info.key_id}[/] "
                  f"({created.info.name}); store it now, it is not shown again:")
    console.print(created.key, highlight=False, soft_wrap=True)


@keys_app.command("ls")
def keys_ls(
    all_keys: bool = typer.Option(False, "--all", help="Include revoked keys."),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """List API keys (ids, names, scopes; never the keys)."""
    keys = _store(config_path).list(include_revoked=all_keys)
    if as_json:
        print_json([_key_dict(info) for info in keys])
        return
    table = Table("key id", "name", "scope", "created", "revoked")
    for info in keys:
        table.add_row(info.key_id, info.name, info.scope.value, _when(info.created_at),
                      _when(info.revoked_at))
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(..., help="The key id shown by 'driftloop keys ls'."),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Revoke an API key; servers reject it within seconds."""
    info = _store(config_path).revoke(key_id)
    if as_json:
        print_json(_key_dict(info))
    else:
        console.print(f"revoked key [bold]{info.key_id}[/] ({info.name})")
