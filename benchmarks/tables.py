"""Printing a benchmark's result rows: a rich table for people, or markdown for the docs."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table


def print_rows(
    console: Console,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    markdown: bool,
    title: str,
) -> None:
    if markdown:
        print("| " + " | ".join(headers) + " |")
        print("|" + "---|" * len(headers))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    table = Table(*headers, title=title)
    for row in rows:
        table.add_row(*row)
    console.print(table)
