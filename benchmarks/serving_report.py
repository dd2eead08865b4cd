"""The serving benchmark's report (``benchmarks/serving.py``): the goals, the side-by-side
comparisons, and the markdown and console tables."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from environment import (
    LoadResult,
    MachineDescription,
)
from serving_project import Project, RawResult, load_cells
from serving_servers import CUSTOM_DRIFTLOOP, CUSTOM_PLAIN, INIT_BASELINE, INIT_UP, Cell


@dataclass(frozen=True)
class Goal:
    name: str
    measured: str
    target: str
    met: bool | None


def find(cells: list[Cell], server: str, clients: int, texts: int) -> LoadResult | None:
    for cell in cells:
        if (
            cell.server == server
            and cell.load.clients == clients
            and cell.load.texts_per_request == texts
        ):
            return cell.load
    return None


def goals(cells: list[Cell], raw: list[RawResult], kind: str) -> list[Goal]:
    """The issue's goals for this model (sklearn: vs plain FastAPI, 64-text requests;
    transformers: batching keeps up with the raw batch-64 throughput)."""
    found: list[Goal] = []
    ours = find(cells, "driftloop", 64, 1)
    plain = find(cells, "plain FastAPI", 64, 1)
    raw64 = next(r for r in raw if r.batch == 64)
    if kind == "transformers" and ours is not None:
        share = ours.texts_per_second / raw64.texts_per_second
        found.append(
            Goal(
                "texts/s at 64 clients (1 text each) vs raw batch 64",
                f"{share:.0%} ({ours.texts_per_second:,.1f} vs {raw64.texts_per_second:,.1f})",
                ">= 90%",
                share >= 0.9,
            )
        )
    if ours and plain and plain.ok_per_second:
        ratio = ours.ok_per_second / plain.ok_per_second
        found.append(
            Goal(
                "req/s at 64 clients vs plain FastAPI (1 text)",
                f"{ratio:.2f}x ({ours.ok_per_second:,.0f} vs {plain.ok_per_second:,.0f})",
                ">= 3x" if kind == "sklearn" else "(goal set for sklearn only)",
                ratio >= 3 if kind == "sklearn" else None,
            )
        )
    if kind == "sklearn":
        found.append(batch64_goal(cells, raw64))
    found += bentoml_goals(cells, ours)
    all_ours = [c.load for c in cells if c.server == "driftloop"]
    failed = sum(c.failed for c in all_ours)
    found.append(
        Goal(
            "driftloop failed or rejected requests (all cells)",
            f"{failed:,} of {sum(c.requests for c in all_ours):,}",
            "0",
            failed == 0,
        )
    )
    return found + one_client_goals(cells, raw)


def batch64_goal(cells: list[Cell], raw64: RawResult) -> Goal:
    """driftloop's best 64-text cell against the raw model's batch-64 throughput."""
    best64 = max(
        (c.load for c in cells if c.server == "driftloop" and c.load.texts_per_request == 64),
        key=lambda x: x.texts_per_second,
    )
    share = best64.texts_per_second / raw64.texts_per_second
    return Goal(
        f"texts/s with 64-text requests ({best64.clients} clients) vs raw batch 64",
        f"{share:.0%} ({best64.texts_per_second:,.0f} vs {raw64.texts_per_second:,.0f})",
        ">= 50%",
        share >= 0.5,
    )


def bentoml_goals(cells: list[Cell], ours: LoadResult | None) -> list[Goal]:
    """driftloop's successful req/s at 64 clients against each BentoML server's."""
    found = []
    for cell in cells:
        if (
            not cell.server.startswith("BentoML")
            or cell.load.clients != 64
            or cell.load.texts_per_request != 1
        ):
            continue
        assert ours is not None
        bento = cell.load
        ratio = ours.ok_per_second / bento.ok_per_second if bento.ok_per_second else float("inf")
        found.append(
            Goal(
                f"successful req/s at 64 clients vs {cell.server}",
                f"{ratio:.2f}x ({ours.ok_per_second:,.0f} vs {bento.ok_per_second:,.0f}; "
                f"BentoML rejected {bento.rejected:,} of {bento.requests:,})",
                ">= 2x",
                ratio >= 2,
            )
        )
    return found


def one_client_goals(cells: list[Cell], raw: list[RawResult]) -> list[Goal]:
    """The overhead per request at one client: against the model time the server reports
    (Server-Timing), and against the raw call on the same text."""
    one = find(cells, "driftloop", 1, 1)
    if one is None:
        return []
    found = []
    raw1 = next(r for r in raw if r.batch == 1)
    plain1 = find(cells, "plain FastAPI", 1, 1)
    in_request = one.in_request_overhead_ms()
    plain_in_request = None if plain1 is None else plain1.in_request_overhead_ms()
    if in_request is not None:
        versus = "" if plain_in_request is None else f"; plain FastAPI {plain_in_request:.2f} ms"
        found.append(
            Goal(
                "overhead per request at 1 client (median of latency - the model time the "
                "server reports for the same request, Server-Timing)",
                f"{in_request:.2f} ms (p50 {one.p50:.2f} ms{versus})",
                "< 1 ms",
                in_request < 1.0,
            )
        )
    overhead = raw1.overhead_ms(one)
    versus = "" if plain1 is None else f"; plain FastAPI {raw1.overhead_ms(plain1):.2f} ms"
    found.append(
        Goal(
            "latency at 1 client minus the raw call on the same text, in process (median; "
            "includes the model's run-to-run spread)",
            f"{overhead:.2f} ms (raw median {raw1.median_ms:.2f} ms{versus})",
            "(context)",
            None,
        )
    )
    return found


def comparisons(cells: list[Cell], raw: list[RawResult]) -> list[tuple[str, list[str]]]:
    """Side-by-side tables of the variant rows, per cell: (title, markdown rows)."""
    tables = []
    pairs = [
        ("driftloop", "plain FastAPI", "built-in"),
        (CUSTOM_DRIFTLOOP, CUSTOM_PLAIN, "custom"),
    ]
    if any(c.server == CUSTOM_DRIFTLOOP for c in cells):
        rows = [
            "| clients x texts | built-in: driftloop / plain FastAPI | custom predictor: "
            "driftloop / plain FastAPI | custom / built-in (driftloop req/s) |",
            "|---|---|---|---|",
        ]
        for clients, texts in load_cells("sklearn"):
            ratios = []
            for ours, plain, _label in pairs:
                a, b = find(cells, ours, clients, texts), find(cells, plain, clients, texts)
                ratios.append(
                    a.ok_per_second / b.ok_per_second if a and b and b.ok_per_second else None
                )
            a, b = (
                find(cells, CUSTOM_DRIFTLOOP, clients, texts),
                find(cells, "driftloop", clients, texts),
            )
            direct = a.ok_per_second / b.ok_per_second if a and b and b.ok_per_second else None
            rows.append(
                f"| {clients} x {texts} | {_ratio(ratios[0])} | {_ratio(ratios[1])} "
                f"| {_ratio(direct)} |"
            )
        for label in ("built-in", "custom"):
            raw64 = next((r for r in raw if r.batch == 64 and r.label == label), None)
            server = "driftloop" if label == "built-in" else CUSTOM_DRIFTLOOP
            best = max(
                (c.load for c in cells if c.server == server and c.load.texts_per_request == 64),
                key=lambda x: x.texts_per_second,
                default=None,
            )
            if raw64 is not None and best is not None:
                rows.append(
                    f"| {label}: best 64-text cell vs raw batch 64 | "
                    f"{best.texts_per_second / raw64.texts_per_second:.2f}x "
                    f"({best.texts_per_second:,.0f} vs {raw64.texts_per_second:,.0f} texts/s) | | |"
                )
        tables.append(("Plug-in path: the same model as a custom predictor", rows))
    if any(c.server == INIT_UP for c in cells):
        rows = [
            f"| clients x texts | driftloop serve (bare config) | {INIT_UP} | {INIT_BASELINE} "
            "| init / bare | init / baseline |",
            "|---|---|---|---|---|---|",
        ]
        for clients, texts in load_cells("sklearn"):
            bare, init, base = (
                find(cells, name, clients, texts) for name in ("driftloop", INIT_UP, INIT_BASELINE)
            )
            rows.append(
                f"| {clients} x {texts} | {_rps(bare)} | {_rps(init)} | {_rps(base)} "
                f"| {_share(init, bare)} | {_share(init, base)} |"
            )
        tables.append(("A `driftloop init` project under `driftloop up` (req/s)", rows))
    return tables


def plugin_goal(cells: list[Cell]) -> list[Goal]:
    """The custom predictor's driftloop / plain FastAPI ratio against the built-in's, per cell
    (median): the plug-in path costs no more than the built-in one."""
    shares = []
    for clients, texts in load_cells("sklearn"):
        loads = [
            find(cells, name, clients, texts)
            for name in ("driftloop", "plain FastAPI", CUSTOM_DRIFTLOOP, CUSTOM_PLAIN)
        ]
        if all(load is not None and load.ok_per_second for load in loads):
            ours, plain, custom, custom_plain = (load.ok_per_second for load in loads if load)
            shares.append((custom / custom_plain) / (ours / plain))
    if not shares:
        return []
    median = statistics.median(shares)
    return [
        Goal(
            "custom predictor vs built-in: (driftloop / plain FastAPI) ratio, median over cells",
            f"{median:.2f} (cells {min(shares):.2f}-{max(shares):.2f})",
            ">= 0.9 (same within noise)",
            median >= 0.9,
        )
    ]


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _rps(load: LoadResult | None) -> str:
    return "n/a" if load is None else f"{load.ok_per_second:,.0f}"


def _share(a: LoadResult | None, b: LoadResult | None) -> str:
    if a is None or b is None or not b.ok_per_second:
        return "n/a"
    return f"{a.ok_per_second / b.ok_per_second:.2f}x"


def markdown(
    machine: MachineDescription,
    project: Project,
    raw: list[RawResult],
    cells: list[Cell],
    found: list[Goal],
    command: str,
    missing: list[str],
) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        machine.markdown(),
        f"- model: {project.description}; request texts drawn from the bundled reviews "
        "(median 233 characters)",
        "",
    ]
    lines += [
        "**Raw model, in process**",
        "",
        "| predictor | batch | texts/s | median call (ms) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r.label} | {r.batch} | {r.texts_per_second:,.0f} | {r.median_ms:.3f} |" for r in raw
    ]
    lines += [
        "",
        "**Over HTTP (one server process each, closed loop on 127.0.0.1)**",
        "",
        "| server | clients | texts/request | requests/s | texts/s | p50 (ms) | p99 (ms) "
        "| failed | of which 503 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cell in cells:
        load = cell.load
        lines.append(
            f"| {cell.server} | {load.clients} | {load.texts_per_request} | "
            f"{load.ok_per_second:,.0f} | {load.texts_per_second:,.0f} | "
            f"{load.p50:.2f} | {load.p99:.2f} | {load.failed:,} | {load.rejected:,} |"
        )
    for title, rows in comparisons(cells, raw):
        lines += ["", f"**{title}**", "", *rows]
    lines += ["", "**Goals**", "", "| goal | measured | target | met |", "|---|---|---|---|"]
    for goal in found:
        met = "n/a" if goal.met is None else ("yes" if goal.met else "**no**")
        lines.append(f"| {goal.name} | {goal.measured} | {goal.target} | {met} |")
    for note in missing:
        lines += ["", note]
    return "\n".join(lines)


def print_console(
    console: Console, kind: str, raw: list[RawResult], cells: list[Cell], found: list[Goal]
) -> None:
    table = Table(
        "server",
        "clients",
        "texts/req",
        "req/s",
        "texts/s",
        "p50 ms",
        "p99 ms",
        "failed",
        "503",
        title=f"serving: {kind} model",
    )
    for r in raw:
        table.add_row(
            f"raw model, {r.label} (in process)",
            "-",
            str(r.batch),
            "-",
            f"{r.texts_per_second:,.0f}",
            f"{r.median_ms:.3f}",
            "-",
            "-",
            "-",
        )
    for cell in cells:
        load = cell.load
        table.add_row(
            cell.server,
            str(load.clients),
            str(load.texts_per_request),
            f"{load.ok_per_second:,.0f}",
            f"{load.texts_per_second:,.0f}",
            f"{load.p50:.2f}",
            f"{load.p99:.2f}",
            str(load.failed),
            str(load.rejected),
        )
    console.print(table)
    goals_table = Table("goal", "measured", "target", "met", title="goals")
    for goal in found:
        goals_table.add_row(
            goal.name,
            goal.measured,
            goal.target,
            "n/a" if goal.met is None else ("yes" if goal.met else "NO"),
        )
    console.print(goals_table)
    for title, rows in comparisons(cells, raw):
        console.print(f"[bold]{title}[/]")
        console.print("\n".join(rows))
