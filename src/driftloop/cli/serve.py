"""Serving commands: ``driftloop serve`` and the API keys it checks (``driftloop keys ...``)."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from driftloop.cli.app import (
    ConfigOption,
    JsonOption,
    LogFormatOption,
    LogLevelOption,
    app,
    console,
    load,
    load_for_service,
    print_json,
    sub_app,
)
from driftloop.timestamps import iso_utc, text_utc

if TYPE_CHECKING:
    from driftloop.serving.feedback import FeedbackStore
    from driftloop.serving.keys import ApiKeyInfo, ApiKeyStore

from driftloop.errors import InvalidInputError


@app.command()
def serve(
    host: str | None = typer.Option(None, "--host", help="Interface to bind (serving.host)."),
    port: int | None = typer.Option(None, "--port", help="Port to listen on (serving.port)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Worker processes."),
    log_level: str | None = LogLevelOption,
    log_format: str | None = LogFormatOption,
    config_path: Path | None = ConfigOption,
) -> None:
    """Serve the production version of every configured model over HTTP."""
    from driftloop.cli.process import ensure_port_free, follow_port
    from driftloop.serving.server import plan_server, run_server

    config = load_for_service(config_path, log_level, log_format)
    plan = plan_server(config, host=host, port=port, workers=workers, config_path=config_path)
    ensure_port_free(plan.host, plan.port)
    config = follow_port(config, plan.host, plan.port)
    console.print(
        f"serving {', '.join(sorted(config.models)) or 'no models'} at "
        f"[bold]{plan.url}[/] ({plan.workers} worker{'s' if plan.workers > 1 else ''});"
        f" API docs at {plan.url}/docs"
    )
    run_server(config, plan)


keys_app = sub_app("keys", "Create, list and revoke API keys for the serving API.")


def _store(config_path: Path | None) -> ApiKeyStore:
    from driftloop.database import open_database
    from driftloop.serving.keys import ApiKeyStore

    config = load(config_path)
    return ApiKeyStore(open_database(config.store, base_dir=config.base_dir))


def _key_dict(info: ApiKeyInfo) -> dict[str, object]:
    return {
        "key_id": info.key_id,
        "name": info.name,
        "scope": info.scope.value,
        "created_at": iso_utc(info.created_at),
        "revoked_at": iso_utc(info.revoked_at),
    }


def _when(timestamp: float | None) -> str:
    return text_utc(timestamp)


@keys_app.command("create")
def keys_create(
    scope: str = typer.Option(
        "predict",
        "--scope",
        help="predict, label (feedback only: a "
        "labelling tool), dashboard (log into the dashboard, read only), "
        "insights (POST /v1/insights only) or admin (implies all).",
    ),
    name: str | None = typer.Option(None, "--name", help="A name to recognise the key by."),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Print the key alone: KEY=$(driftloop keys create -q)."
    ),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from driftloop.serving.keys import parse_scope

    created = _store(config_path).create(parse_scope(scope), name=name)
    if as_json:
        print_json({"key": created.key, **_key_dict(created.info)})
        return
    if quiet:
        sys.stdout.write(created.key + "\n")
        return
    console.print(
        f"created {created.info.scope.value} key [bold]{created.info.key_id}[/] "
        f"({escape(created.info.name)}); store it now, it is not shown again:"
    )
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
        table.add_row(
            info.key_id,
            escape(info.name),
            info.scope.value,
            _when(info.created_at),
            _when(info.revoked_at),
        )
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
        console.print(f"revoked key [bold]{info.key_id}[/] ({escape(info.name)})")


feedback_app = sub_app("feedback", "List and purge the true labels that production sent back.")


def _feedback(config_path: Path | None) -> FeedbackStore:
    from driftloop.database import open_database
    from driftloop.serving.feedback import FeedbackStore

    config = load(config_path)
    return FeedbackStore(open_database(config.store, base_dir=config.base_dir))


@feedback_app.command("ls")
def feedback_ls(
    model: str = typer.Argument(..., help="The served model's name."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="How many, newest first."),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """List a model's latest feedback: labels, the texts sent with them, who sent them."""
    records = _feedback(config_path).list(model, limit=limit, newest=True)
    if as_json:
        print_json(
            [
                {
                    **asdict(record),
                    "received_at": iso_utc(record.received_at),
                    "correct": record.correct,
                }
                for record in records
            ]
        )
        return
    table = Table("received", "prediction id", "label", "predicted", "key id", "text")
    for record in records:
        text = "" if record.text is None else record.text
        table.add_row(
            _when(record.received_at),
            record.prediction_id,
            record.label,
            record.predicted_class or "",
            record.key_id or "",
            text if len(text) <= 60 else text[:57] + "...",
        )
    console.print(table)


@feedback_app.command("purge")
def feedback_purge(
    model: str = typer.Argument(..., help="The served model's name."),
    key_id: str | None = typer.Option(None, "--key", help="Only what this key id sent."),
    older_than: str | None = typer.Option(
        None, "--older-than", help="Only what arrived longer ago than this (30d, 12h, 90m)."
    ),
    everything: bool = typer.Option(False, "--all", help="All of the model's feedback."),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Delete feedback (labels and texts), e.g. what a misbehaving labelling tool sent.

    A model with merge_feedback stops learning from it at its next retrain.
    """
    from driftloop.config import parse_duration

    if key_id is None and older_than is None and not everything:
        raise InvalidInputError("say what to purge: --key KEY_ID, --older-than DURATION, or --all")
    try:
        before = None if older_than is None else time.time() - parse_duration(older_than)
    except ValueError as exc:
        raise InvalidInputError(f"--older-than: {exc}") from None
    deleted = _feedback(config_path).purge(model, key_id=key_id, received_before=before)
    if as_json:
        print_json({"model": model, "deleted": deleted})
    else:
        console.print(f"deleted {deleted} feedback label(s) of {model}")
