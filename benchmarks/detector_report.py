"""The detectors benchmark's tables (``benchmarks/detectors.py``): false alarms and throughput,
the delay per scenario, and the goal."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from detector_lineup import COMBINED
from detector_runs import DetectorResult, OracleResult, ScenarioResult


def fmt_delay(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.0f}"


def goal_rows(
    results: list[DetectorResult],
    budget: float,
    scenario_names: list[str],
    oracles: dict[str, OracleResult],
    mean_oracles: dict[str, ScenarioResult | None],
) -> list[tuple[str, ...]]:
    """Per scenario: the one default configuration against the best tuned competitor and,
    on abrupt drops, against the mean-CUSUM oracle."""
    rows: list[tuple[str, ...]] = []
    combined = next(r for r in results if r.spec.name == COMBINED)
    within = combined.false_alarms_per_10k <= budget
    for name in scenario_names:
        ours = [r for r in results if r.spec.ours and r.false_alarms_per_10k <= budget]
        theirs = [r for r in results if not r.spec.ours]
        best_ours = min(ours, key=lambda r: r.scenarios[name].quantile(0.5), default=None)
        best_theirs = min(theirs, key=lambda r: r.scenarios[name].quantile(0.5))
        delay = combined.scenarios[name].quantile(0.5)
        ours_delay = math.inf if best_ours is None else best_ours.scenarios[name].quantile(0.5)
        their_delay = best_theirs.scenarios[name].quantile(0.5)
        versus_theirs = "—" if math.isinf(their_delay) else f"{delay / their_delay:.2f}"
        beats = within and (math.isinf(their_delay) or delay <= their_delay)
        mean_result = mean_oracles.get(name)
        if mean_result is None:
            oracle_cell, versus_oracle = "—", "—"
        else:
            oracle_delay = mean_result.quantile(0.5)
            ratio = delay / oracle_delay
            oracle_cell = fmt_delay(oracle_delay)
            versus_oracle = f"{ratio:.2f} ({'met' if within and ratio <= 1.1 else 'not met'})"
        rows.append(
            (
                name,
                f"{fmt_delay(delay)} ({100 * combined.scenarios[name].detection_rate:.0f}%)",
                f"{fmt_delay(ours_delay)} ({best_ours.spec.name if best_ours else 'none'})",
                f"{fmt_delay(their_delay)} ({best_theirs.spec.name})",
                f"{versus_theirs} ({'met' if beats else 'not met'})",
                oracle_cell,
                versus_oracle,
                f"{fmt_delay(oracles[name].result.quantile(0.5))} "
                f"({oracles[name].false_alarms_per_10k:.2f} / 10k)",
            )
        )
    return rows


Table3 = tuple[str, list[str], list[list[str]]]
"""A table: its title, its header and its rows."""


def render(
    results: list[DetectorResult],
    budget: float,
    scenario_names: list[str],
    oracles: dict[str, OracleResult],
    mean_oracles: dict[str, ScenarioResult | None],
    markdown: bool,
    console: Console,
) -> None:
    tables = [summary_table(results), *scenario_tables(results, scenario_names)]
    tables.append(goal_table(results, budget, scenario_names, oracles, mean_oracles))
    print_tables(tables, markdown, console)


def summary_table(results: list[DetectorResult]) -> Table3:
    """Per detector: its setting, false alarms (no change, before drift) and updates/s."""
    summary = []
    for r in results:
        early = sum(s.early_alarms for s in r.scenarios.values())
        early_values = sum(s.early_values for s in r.scenarios.values())
        summary.append(
            [
                r.spec.name,
                r.spec.setting,
                f"{r.false_alarms_per_10k:.2f}",
                f"{1e4 * early / max(1, early_values):.2f}",
                f"{r.updates_per_second:,.0f}",
            ]
        )
    return (
        "False alarms and throughput",
        [
            "detector",
            "setting",
            "false alarms / 10k (no change)",
            "false alarms / 10k (before drift)",
            "updates/s",
        ],
        summary,
    )


def scenario_tables(results: list[DetectorResult], scenario_names: list[str]) -> list[Table3]:
    """Per scenario: each detector's detection rate and median and p90 delay."""
    tables: list[Table3] = []
    for name in scenario_names:
        rows = [
            [
                r.spec.name,
                f"{100 * r.scenarios[name].detection_rate:.0f}%",
                fmt_delay(r.scenarios[name].quantile(0.5)),
                fmt_delay(r.scenarios[name].quantile(0.9)),
            ]
            for r in results
        ]
        tables.append(
            (
                f"{name}: detection delay (values after the change)",
                ["detector", "detected", "median delay", "p90 delay"],
                rows,
            )
        )
    return tables


def goal_table(
    results: list[DetectorResult],
    budget: float,
    scenario_names: list[str],
    oracles: dict[str, OracleResult],
    mean_oracles: dict[str, ScenarioResult | None],
) -> Table3:
    goals = [list(row) for row in goal_rows(results, budget, scenario_names, oracles, mean_oracles)]
    return (
        f"Goal: {COMBINED} (one configuration, from the reference alone) at <= {budget:g} "
        "false alarm per 10,000 values: median delay no worse than the best tuned competitor "
        "on every scenario, and within 1.1x the mean-CUSUM oracle on abrupt drops "
        "(misses count as never)",
        [
            "scenario",
            f"{COMBINED} median delay (detected)",
            "best driftloop detector",
            "best tuned competitor",
            "ratio to competitor (goal <= 1)",
            "mean-CUSUM oracle (told the drop)",
            "ratio to oracle (goal <= 1.1)",
            "LLR-CUSUM oracle (false alarms)",
        ],
        goals,
    )


def print_tables(tables: list[Table3], markdown: bool, console: Console) -> None:
    """Markdown tables, or rich tables for the console."""
    for title, header, rows in tables:
        if markdown:
            console.print(f"\n**{title}**\n", markup=False)
            console.print("| " + " | ".join(header) + " |", markup=False)
            console.print("|" + "---|" * len(header), markup=False)
            for row in rows:
                console.print("| " + " | ".join(row) + " |", markup=False)
        else:
            table = Table(title=title)
            for column in header:
                table.add_column(column, overflow="fold")
            for row in rows:
                table.add_row(*row)
            console.print(table)
