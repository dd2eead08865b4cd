"""The retrain-policy benchmark's tables (``benchmarks/retrain_policy.py``): per scenario, the
overview, the means and the verdict, printed as markdown or to the console."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from retrain_policy_cells import CV_FOLDS, MODELS, POLICIES, TITLES, TOLERANCE, Table3
from retrain_policy_summary import ScenarioSummary, mean


def f3(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.3f}"


def with_sd(metrics: dict[str, float], metric: str) -> str:
    sd = metrics[f"{metric}_sd"]
    return f"{metrics[metric]:.3f} ±{sd:.3f}" if sd else f"{metrics[metric]:.3f}"


def points(value: float) -> str:
    return f"{100 * value:+.1f}"


def scenario_table(s: ScenarioSummary) -> Table3:
    title = (
        f"{s.scenario}: {s.new_rows:.0f} labeled new rows, traffic {s.known_traffic:.0f} "
        f"known / {s.drifted_traffic:.0f} drifted, seeds {', '.join(map(str, s.seeds))} "
        "(± the spread over seeds)"
    )
    header = [
        "model",
        "train rows",
        "C",
        "acc known",
        "acc drifted",
        "known vs v1 (pts)",
        "conf reference",
        "conf known",
        "conf drifted",
    ]
    rows = []
    for model in MODELS:
        m = s.metrics[model]
        rows.append(
            [
                TITLES[model],
                f"{m['train_rows']:.0f}",
                f"{m['c']:g}",
                with_sd(m, "acc_known"),
                with_sd(m, "acc_drift"),
                "" if model == "v1" else points(-s.forgetting(model)),
                f3(m["conf_reference"]),
                f3(m["conf_known"]),
                f3(m["conf_drift"]),
            ]
        )
    rows.append(
        [
            f"CV, every subtopic ({CV_FOLDS}-fold)",
            "",
            "",
            f3(s.cv_known),
            f3(s.cv_drift),
            "",
            "",
            "",
            "",
        ]
    )
    return title, header, rows


def overview_table(summaries: list[ScenarioSummary]) -> Table3:
    header = [
        "scenario",
        "new rows",
        "acc_pre",
        "acc_pre (v1 every known row)",
        "acc_v1_drift",
        "CV drifted",
        *(f"{p}: drifted / known vs v1" for p in POLICIES),
        *(f"{p} recovers" for p in POLICIES),
    ]
    rows = []
    for s in summaries:
        rows.append(
            [
                s.scenario,
                f"{s.new_rows:.0f}",
                f3(s.acc_pre),
                f3(s.acc_pre_all_known),
                f3(s.metrics["v1"]["acc_drift"]),
                f3(s.cv_drift),
                *(
                    f"{f3(s.metrics[p]['acc_drift'])} / {points(-s.forgetting(p))}"
                    for p in POLICIES
                ),
                *("yes" if s.recovers(p) else "no" for p in POLICIES),
            ]
        )

    def avg(model: str, key: str) -> float:
        return mean([s.metrics[model][key] for s in summaries])

    rows.append(
        [
            "mean",
            f"{mean([s.new_rows for s in summaries]):.0f}",
            f3(mean([s.acc_pre for s in summaries])),
            f3(mean([s.acc_pre_all_known for s in summaries])),
            f3(avg("v1", "acc_drift")),
            f3(mean([s.cv_drift for s in summaries])),
            *(
                f"{f3(avg(p, 'acc_drift'))} / {points(-mean([s.forgetting(p) for s in summaries]))}"
                for p in POLICIES
            ),
            *(f"{sum(s.recovers(p) for s in summaries)}/{len(summaries)}" for p in POLICIES),
        ]
    )
    return (
        "Per scenario (means over seeds): v2's accuracy on drifted traffic / points gained "
        "(+) or lost (-) on known traffic against v1; recovers: acc drifted >= acc_pre - 0.02",
        header,
        rows,
    )


def mean_table(summaries: list[ScenarioSummary]) -> Table3:
    header = [
        "model",
        "acc known",
        "acc drifted",
        "known vs v1 (pts)",
        "worst known vs v1 (pts)",
        "scenarios losing > 2 pts known",
        "recovers",
        "recovers vs v1 every known row",
        "conf reference",
        "conf known",
        "conf drifted",
        "conf - acc drifted",
    ]
    rows = []
    for model in MODELS:

        def avg(key: str, model: str = model) -> float:
            return mean([s.metrics[model][key] for s in summaries])

        v2 = model not in ("v1", "v1_all_known")
        losses = [s.forgetting(model) for s in summaries] if v2 else []
        n = len(summaries)
        rows.append(
            [
                TITLES[model],
                f3(avg("acc_known")),
                f3(avg("acc_drift")),
                points(-mean(losses)) if v2 else "",
                points(-max(losses)) if v2 else "",
                f"{sum(x > TOLERANCE for x in losses)}/{n}" if v2 else "",
                f"{sum(s.recovers(model) for s in summaries)}/{n}" if v2 else "",
                f"{sum(s.recovers(model, strict=True) for s in summaries)}/{n}" if v2 else "",
                f3(avg("conf_reference")),
                f3(avg("conf_known")),
                f3(avg("conf_drift")),
                f"{avg('conf_drift') - avg('acc_drift'):+.3f}",
            ]
        )
    rows.append(
        [
            f"CV, every subtopic ({CV_FOLDS}-fold)",
            f3(mean([s.cv_known for s in summaries])),
            f3(mean([s.cv_drift for s in summaries])),
            *[""] * 9,
        ]
    )
    return f"Mean over {len(summaries)} scenarios", header, rows


def verdict_table(summaries: list[ScenarioSummary], policy: str) -> Table3:
    rows = [
        [
            s.scenario,
            f3(s.acc_pre),
            f3(s.acc_pre_all_known),
            f3(s.metrics[policy]["acc_drift"]),
            "yes" if s.recovers(policy) else "no",
            "yes" if s.recovers(policy, strict=True) else "no",
            "" if s.recovers(policy) else s.why_not(policy),
        ]
        for s in summaries
    ]
    return (
        f"Goal with the {policy} policy: v2 on drifted traffic within 2 points of v1 on "
        "known traffic",
        [
            "scenario",
            "acc_pre",
            "acc_pre (v1 every known row)",
            "acc_v2_drift",
            "met",
            "met vs v1 every known row",
            "why not",
        ],
        rows,
    )


def render(tables: list[Table3], markdown: bool, console: Console) -> None:
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
