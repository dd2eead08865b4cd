"""Registry commands: ``driftloop models ls|show|history|promote|rollback|register``."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from driftloop.cli.app import ConfigOption, JsonOption, console, load, print_json, sub_app

if TYPE_CHECKING:
    from driftloop.registry.versions import ModelVersion


models_app = sub_app("models", "Inspect, promote and roll back registered model versions.")


def _default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


ActorOption = typer.Option(None, "--actor", help="Who makes the change (default: cli:$USER).")


@models_app.command("ls")
def models_ls(config_path: Path | None = ConfigOption, as_json: bool = JsonOption) -> None:
    """List registered models with their aliases and latest version."""
    from driftloop.registry.model_registry import ModelRegistry
    from driftloop.registry.versions import PRODUCTION

    registry = ModelRegistry.from_config(load(config_path))
    rows: list[dict[str, Any]] = []
    for name in registry.list_models():
        versions = registry.list_versions(name)
        latest = versions[-1]
        rows.append(
            {
                "name": name,
                "versions": len(versions),
                "latest_version": latest.version,
                "latest_created_at": latest.created_at.isoformat(),
                "aliases": registry.aliases(name),
            }
        )
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no models registered yet: driftloop train MODEL")
        return
    table = Table("model", "production", "aliases", "versions", "latest", "created")
    for row in rows:
        aliases = row["aliases"]
        table.add_row(
            row["name"],
            str(aliases.get(PRODUCTION, "-")),
            ", ".join(f"{a}→v{v}" for a, v in aliases.items()) or "-",
            str(row["versions"]),
            f"v{row['latest_version']}",
            row["latest_created_at"][:19],
        )
    console.print(table)


@models_app.command("show")
def models_show(
    name: str = typer.Argument(..., help="Model name."),
    version: int | None = typer.Option(None, "--version", "-v", help="Version to show."),
    alias: str | None = typer.Option(None, "--alias", "-a", help="Show the version of an alias."),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Show a version (default: production, else the latest) with its hash, data and metrics."""
    from driftloop.registry.model_registry import ModelRegistry
    from driftloop.registry.versions import PRODUCTION

    registry = ModelRegistry.from_config(load(config_path))
    aliases = registry.aliases(name)
    if version is not None:
        shown = registry.get_version(name, version)
    elif alias is not None:
        shown = registry.resolve(name, alias)
    elif PRODUCTION in aliases:
        shown = registry.resolve(name, PRODUCTION)
    else:
        shown = registry.latest_version(name)
    versions = registry.list_versions(name)
    if as_json:
        print_json(
            {
                "name": name,
                "aliases": aliases,
                "version": shown.to_dict(),
                "versions": [_summary(v, aliases) for v in versions],
            }
        )
        return
    console.print(f"[bold]{name} v{shown.version}[/]", highlight=False)
    _print_version(shown, aliases)
    table = Table(
        "version", "aliases", "hash", "trigger", "macro-F1", "ECE", "created", title="versions"
    )
    for item in versions:
        summary = _summary(item, aliases)
        table.add_row(
            f"v{item.version}",
            ", ".join(summary["aliases"]) or "-",
            item.content_hash[:12],
            item.trigger,
            _metric(summary["macro_f1"]),
            _metric(summary["ece"]),
            item.created_at.isoformat(timespec="seconds"),
        )
    console.print(table)


def _summary(version: ModelVersion, aliases: dict[str, int]) -> dict[str, Any]:
    from driftloop.predictors import Evaluation, RegressionEvaluation

    evaluation = version.evaluation
    return {
        "version": version.version,
        "aliases": sorted(a for a, v in aliases.items() if v == version.version),
        "content_hash": version.content_hash,
        "trigger": version.trigger,
        "snapshot_id": version.snapshot_id,
        "training_code": version.training_code or None,
        "macro_f1": evaluation.macro_f1 if isinstance(evaluation, Evaluation) else None,
        "ece": evaluation.ece if isinstance(evaluation, Evaluation) else None,
        "rmse": evaluation.rmse if isinstance(evaluation, RegressionEvaluation) else None,
        "created_at": version.created_at.isoformat(),
        "deployed_at": None if version.deployed_at is None else version.deployed_at.isoformat(),
    }


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_version(version: ModelVersion, aliases: dict[str, int]) -> None:
    table = Table("", "", show_header=False)
    own = sorted(a for a, v in aliases.items() if v == version.version)
    rows = [
        ("aliases", ", ".join(own) or "-"),
        ("content hash", version.content_hash),
        ("artifact", version.artifact_uri),
        ("trainer", version.trainer),
        ("data snapshot", f"{version.snapshot_id} (hash {(version.snapshot_hash or '-')[:12]})"),
        ("trigger", version.trigger),
        ("training code", version.training_code or "-"),
        ("parent version", str(version.parent_version or "-")),
        ("created", version.created_at.isoformat(timespec="seconds")),
        (
            "deployed",
            "-"
            if version.deployed_at is None
            else version.deployed_at.isoformat(timespec="seconds"),
        ),
    ]
    from driftloop.predictors import RegressionEvaluation

    e = version.evaluation
    if isinstance(e, RegressionEvaluation):
        rows += [("MAE", f"{e.mae:.3f}"), ("RMSE", f"{e.rmse:.3f}"), ("R²", f"{e.r2:.3f}")]
    elif e is not None:
        rows += [
            ("accuracy", f"{e.accuracy:.3f}"),
            ("macro-F1", f"{e.macro_f1:.3f}"),
            ("ECE before / after", f"{e.ece_before_calibration:.3f} / {e.ece:.3f}"),
            ("per-class F1", ", ".join(f"{k} {v:.2f}" for k, v in e.per_class_f1.items())),
        ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


@models_app.command("history")
def models_history(
    name: str = typer.Argument(..., help="Model name."),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """List every alias change of a model (promotions and rollbacks), oldest first."""
    from driftloop.registry.model_registry import ModelRegistry

    changes = ModelRegistry.from_config(load(config_path)).alias_history(name)
    if as_json:
        print_json([c.to_dict() for c in changes])
        return
    table = Table("when", "alias", "action", "from", "to", "actor")
    for c in changes:
        table.add_row(
            c.changed_at.isoformat(timespec="seconds"),
            c.alias,
            c.action,
            "-" if c.previous_version is None else f"v{c.previous_version}",
            f"v{c.version}",
            c.actor,
        )
    console.print(table if changes else f"no alias changes for {name!r}")


@models_app.command("promote")
def models_promote(
    name: str = typer.Argument(..., help="Model name."),
    version: int = typer.Argument(..., help="Version to point the alias at."),
    alias: str = typer.Option("production", "--alias", "-a", help="Alias to move."),
    actor: str | None = ActorOption,
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Point an alias (default: production) at a version.

    For a model served elsewhere, its deploy hook is called first and production moves only if
    it succeeds."""
    from driftloop.registry.deploy_hook import tell_deploy_hook
    from driftloop.registry.model_registry import ModelRegistry
    from driftloop.registry.versions import PRODUCTION

    config = load(config_path)
    registry = ModelRegistry.from_config(config)
    actor = actor or _default_actor()
    if alias == PRODUCTION:
        tell_deploy_hook(config, registry, name, "deploy", version, actor=actor)
    registry.set_alias(name, alias, version, actor=actor)
    if as_json:
        print_json(
            {"name": name, "alias": alias, "version": version, "aliases": registry.aliases(name)}
        )
        return
    console.print(f"{name}: {alias} → v{version}", highlight=False)


@models_app.command("rollback")
def models_rollback(
    name: str = typer.Argument(..., help="Model name."),
    actor: str | None = ActorOption,
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Point production back at the version deployed before the current one.

    For a model served elsewhere, its deploy hook is called first and production moves only if
    it succeeds."""
    from driftloop.registry.deploy_hook import tell_deploy_hook
    from driftloop.registry.model_registry import ModelRegistry
    from driftloop.registry.versions import PRODUCTION

    config = load(config_path)
    registry = ModelRegistry.from_config(config)
    actor = actor or _default_actor()
    target = registry.rollback_target(name)
    tell_deploy_hook(config, registry, name, "rollback", target, actor=actor)
    version = registry.rollback(name, actor=actor)
    if as_json:
        print_json({"name": name, "alias": PRODUCTION, "version": version.version})
        return
    console.print(f"{name}: production rolled back to v{version.version}", highlight=False)


@models_app.command("register")
def models_register(
    name: str = typer.Argument(..., help="Model name."),
    directory: Path = typer.Argument(..., help="A saved predictor directory."),
    trigger: str = typer.Option("manual", "--trigger", help="manual, ci:<run>, incident:<id>."),
    trainer: str = typer.Option("external", "--trainer", help="How the model was trained."),
    data: str | None = typer.Option(None, "--data", help="Snapshot id it was trained on."),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Dataset of --data (default: the model's configured dataset)."
    ),
    evaluation: Path | None = typer.Option(
        None, "--evaluation", help="JSON file with its evaluation (and reference profile)."
    ),
    reference: Path | None = typer.Option(
        None,
        "--reference",
        help="Reference inputs (.csv, .jsonl, .parquet) to profile the model on.",
    ),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Register a model trained elsewhere, e.g. by a CI job, as a new version.

    DIRECTORY is a driftloop model directory or a Hugging Face sequence-classification
    checkpoint."""
    from driftloop.trainers.training import NO_REFERENCE, register_external

    version = register_external(
        load(config_path),
        name,
        directory,
        trigger=trigger,
        trainer=trainer,
        snapshot_id=data,
        dataset=dataset,
        evaluation_file=evaluation,
        reference_file=reference,
    )
    if as_json:
        print_json(version.to_dict())
        return
    console.print(
        f"registered {name} v{version.version} (hash {version.content_hash[:12]})"
        + (", now production" if version.deployed_at else "")
        + (
            "; no reference profile: the monitors learn it from the first live values"
            if version.params.get("reference") == NO_REFERENCE
            else ""
        ),
        highlight=False,
    )
