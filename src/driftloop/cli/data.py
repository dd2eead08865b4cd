"""Dataset commands: ``driftloop data push|ls``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from driftloop.cli.app import ConfigOption, JsonOption, console, load, print_json, sub_app

data_app = sub_app("data", "Push and list dataset snapshots in object storage.")


@data_app.command("push")
def data_push(
    file: Path = typer.Argument(..., help="CSV (optionally .gz) or Parquet file to store."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name, e.g. reviews."),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """Store a file as a new immutable snapshot of a dataset."""
    from driftloop.objectstore.datasets import DatasetStore

    snapshot = DatasetStore.from_config(load(config_path)).push(file, dataset)
    if as_json:
        print_json(snapshot.to_dict())
        return
    console.print(
        f"pushed [bold]{snapshot.dataset}[/] snapshot [bold]{snapshot.snapshot_id}[/]: "
        f"{snapshot.row_count} rows, columns {', '.join(snapshot.columns)}, "
        f"hash {snapshot.content_hash[:12]}",
        highlight=False,
    )


@data_app.command("ls")
def data_ls(
    dataset: str | None = typer.Option(
        None, "--dataset", "-d", help="List this dataset's snapshots (default: all datasets)."
    ),
    config_path: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """List datasets, or the snapshots of one dataset (oldest first)."""
    from driftloop.objectstore.datasets import DatasetStore

    store = DatasetStore.from_config(load(config_path))
    if dataset is not None:
        snapshots = store.list(dataset)
        if as_json:
            print_json([s.to_dict() for s in snapshots])
            return
        table = Table("snapshot", "created", "rows", "hash", "columns", title=dataset)
        for s in snapshots:
            table.add_row(
                s.snapshot_id,
                s.created_at.isoformat(timespec="seconds"),
                str(s.row_count),
                s.content_hash[:12],
                ", ".join(s.columns),
            )
        console.print(table if snapshots else f"dataset {dataset!r} has no snapshots")
        return
    listed = [(name, store.list(name)) for name in store.datasets()]
    if as_json:
        print_json(
            [
                {"dataset": name, "snapshots": len(snapshots), "newest": snapshots[-1].to_dict()}
                for name, snapshots in listed
            ]
        )
        return
    table = Table("dataset", "snapshots", "newest snapshot", "rows", "created")
    for name, snapshots in listed:
        newest = snapshots[-1]
        table.add_row(
            name,
            str(len(snapshots)),
            newest.snapshot_id,
            str(newest.row_count),
            newest.created_at.isoformat(timespec="seconds"),
        )
    console.print(table if listed else "no datasets yet: driftloop data push FILE --dataset NAME")
