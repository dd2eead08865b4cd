"""Retrain data policies side by side (issue 17, part 4): which rows should v2 learn from when
traffic drifts to subtopics v1 never saw? Offline, no server; the sklearn trainer, run as the
pipeline runs it (``get_trainer`` on a ``ModelConfig(trainer="sklearn")``, ``TrainingData``).

Each scenario holds some subtopics of the bundled reviews out of v1's data. The split is the
demo's own (``build_scenario(drifting=..., newest_window=W, seed=s)``): a quarter of every
subtopic is traffic that no model trains on; of the known subtopics' other rows the oldest
``1 - W`` are **snapshot 1** (v1's data) and the newest ``W`` arrive later, together with the
drifting subtopics' labeled rows, as the **newest window**. v2 is retrained under three policies:

* **cumulative**: snapshot 1 + the newest window (every labeled row there is);
* **newest**: the newest window only (the new subtopics plus the newest known rows);
* **weighted**: cumulative, with the newest window carrying ``--newest-share`` of the total
  weight (default half). The sklearn trainer takes no sample weights (``TrainingData`` has no
  weight column, ``SklearnTrainer.fit`` passes none to ``LogisticRegression.fit``), so the
  weighting is emulated by repeating the lighter side's rows (the fractional part of the factor
  as a seeded sample). The trainer then splits the copies of a row across its train, validation
  and held-out sets: validation looks easier than it is (it picks a weaker regularisation), and
  the reference confidence, measured on the held-out rows, comes out too high. Two diagnostic
  models show what that does: **weighted, cumulative's C** (the same rows, ``C`` fixed to the
  one the cumulative policy chose: the weighting without the leak's pick of ``C``) and **v1,
  every known row** (v1 trained on snapshot 1 plus the newest known rows, as in the sklearn
  demo, whose v1 has all of them: the stricter ``acc_pre``).

Measured, on the known traffic (rows of v1's subtopics) and the drifted traffic (rows of the
held-out subtopics only, which is what the demo's phase 2 sends: see ``driftloop.demo.runner``
and ``driftloop.demo.traffic``), for every model: accuracy and mean calibrated confidence
(top-class probability, what the monitors watch), next to the model's reference confidence (its
held-out mean, what relative thresholds compare against). **CV, every subtopic** is a 4-fold
cross-validation over the whole data set with the same trainer (every subtopic in training at
its natural share): out-of-fold accuracy on the held-out subtopics' rows and on the others, i.e.
how hard a subtopic is even for a model trained on it (not a strict upper bound: a policy that
gives the new rows more weight can beat it on them).

Scenarios (default): every subtopic with at least 400 rows alone, plus the subtopics of the
topics with more than two subtopics (Clothing, Food) paired across topics by size rank; every
class keeps at least one subtopic in snapshot 1 (checked, also for ``--scenarios``).

Reported: the best policy by mean accuracy on drifted traffic among those that lose at most 2
points on known traffic against v1 in every scenario; and per scenario whether v2's accuracy on
drifted traffic is within 2 points of v1's on known traffic (issue 17, part 5), if not why.

    .venv/bin/python benchmarks/retrain_policy.py                      # 18 scenarios x 2 seeds
                                                # (850 s of CPU: about 7 minutes on 2 idle cores)
    .venv/bin/python benchmarks/retrain_policy.py --seeds 7 8 9 --json retrain-policy.json
    .venv/bin/python benchmarks/retrain_policy.py --seeds 7 --scenarios bottoms pet_food+tops
    .venv/bin/python benchmarks/retrain_policy.py --markdown           # tables for the docs
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from typing import Any

from rich.console import Console

from retrain_policy_cells import (
    CV_FOLDS,
    DEFAULT_SEEDS,
    MODELS,
    POLICIES,
    TOLERANCE,
    Cell,
    CrossValidation,
    check_scenario,
    default_scenarios,
    load_reviews,
    parse_scenario,
    run_cell,
    run_cross_validation,
    scenario_name,
)
from retrain_policy_summary import ScenarioSummary, choose_policy, mean, summarise
from retrain_policy_tables import mean_table, overview_table, render, scenario_table, verdict_table


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(DEFAULT_SEEDS),
        help="split and training seeds (default: 7 8)",
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        metavar="SUBTOPIC[+SUBTOPIC]",
        help="held-out subtopic sets (default: the rule in the docstring)",
    )
    parser.add_argument(
        "--window",
        type=float,
        default=0.25,
        help="share of the known subtopics' training rows in the newest window",
    )
    parser.add_argument(
        "--newest-share",
        type=float,
        default=0.5,
        help="the newest window's share of the weight in the weighted policy",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: one per CPU)",
    )
    parser.add_argument("--json", metavar="OUT", help="write every figure to this JSON file")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    args = parser.parse_args(argv)
    if not 0 < args.newest_share < 1:
        parser.error("--newest-share must lie in (0, 1)")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    began = time.perf_counter()
    console = Console(width=250 if args.markdown else None)
    if not args.markdown and not console.is_terminal:
        console = Console(width=220)
    frame = load_reviews()
    scenarios = (
        [parse_scenario(s) for s in args.scenarios] if args.scenarios else default_scenarios(frame)
    )
    for drifting in scenarios:
        check_scenario(frame, drifting)
    console.print(
        f"{len(scenarios)} scenarios x {len(args.seeds)} seeds, {args.jobs} "
        f"processes: {', '.join(scenario_name(d) for d in scenarios)}",
        markup=False,
    )
    cells, folds = run_all(scenarios, args, console)
    summaries = [summarise(d, cells[scenario_name(d)], folds) for d in scenarios]
    policy, rule = choose_policy(summaries)
    tables = [scenario_table(s) for s in summaries]
    tables += [overview_table(summaries), mean_table(summaries), verdict_table(summaries, policy)]
    render(tables, args.markdown, console)
    print_recommendation(console, policy, rule, summaries)
    seconds = time.perf_counter() - began
    cpu = sum(c.cpu_seconds for group in cells.values() for c in group) + sum(
        f.cpu_seconds for f in folds.values()
    )
    console.print(
        f"{len(scenarios)} scenarios x {len(args.seeds)} seeds, window {args.window:g}, "
        f"newest share {args.newest_share:g}, {args.jobs} processes: {seconds:.0f}s "
        f"wall, {cpu:.0f}s CPU in the workers",
        markup=False,
    )
    if args.json:
        write_json(args, policy, rule, summaries, cells, folds, seconds, cpu)
        console.print(f"wrote {args.json}", markup=False)


def run_all(
    scenarios: list[tuple[str, ...]], args: argparse.Namespace, console: Console
) -> tuple[dict[str, list[Cell]], dict[int, CrossValidation]]:
    """Every scenario and seed, and the cross-validation of every seed, in worker processes;
    each cell printed as it comes in."""
    cells: dict[str, list[Cell]] = {scenario_name(d): [] for d in scenarios}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        cv_futures = {seed: pool.submit(run_cross_validation, seed) for seed in args.seeds}
        futures = [
            pool.submit(run_cell, d, seed, args.window, args.newest_share)
            for d in scenarios
            for seed in args.seeds
        ]
        for future in futures:
            cell = future.result()
            cells[cell.scenario].append(cell)
            m = cell.models
            console.print(
                f"{cell.scenario} seed {cell.seed}: v1 {m['v1'].acc_known:.3f} known "
                f"/ {m['v1'].acc_drift:.3f} drifted; v2 drifted "
                + ", ".join(f"{p} {m[p].acc_drift:.3f}" for p in POLICIES)
                + f" ({cell.seconds:.0f}s)",
                markup=False,
            )
        folds = {seed: future.result() for seed, future in cv_futures.items()}
    return cells, folds


def print_recommendation(
    console: Console, policy: str, rule: str, summaries: list[ScenarioSummary]
) -> None:
    best = [s.metrics[policy] for s in summaries]
    console.print(
        f"\nRecommended policy: {policy} ({rule}): accuracy on drifted traffic "
        f"{mean([m['acc_drift'] for m in best]):.3f} (v1: "
        f"{mean([s.metrics['v1']['acc_drift'] for s in summaries]):.3f}), on known traffic "
        f"{mean([m['acc_known'] for m in best]):.3f} (v1: "
        f"{mean([s.acc_pre for s in summaries]):.3f}); recovery goal met in "
        f"{sum(s.recovers(policy) for s in summaries)} of {len(summaries)} scenarios "
        f"({sum(s.recovers(policy, strict=True) for s in summaries)} against v1 trained on "
        "every known row).",
        markup=False,
    )


def write_json(
    args: argparse.Namespace,
    policy: str,
    rule: str,
    summaries: list[ScenarioSummary],
    cells: dict[str, list[Cell]],
    folds: dict[int, CrossValidation],
    seconds: float,
    cpu: float,
) -> None:
    """Every figure of the run in ``args.json``."""
    report: dict[str, Any] = {
        "settings": {
            "seeds": args.seeds,
            "window": args.window,
            "newest_share": args.newest_share,
            "tolerance": TOLERANCE,
            "cv_folds": CV_FOLDS,
            "jobs": args.jobs,
        },
        "recommended_policy": policy,
        "rule": rule,
        "scenarios": [
            {
                **asdict(s),
                "acc_pre": s.acc_pre,
                "acc_pre_all_known": s.acc_pre_all_known,
                "forgetting": {p: s.forgetting(p) for p in MODELS[2:]},
                "recovers": {p: s.recovers(p) for p in MODELS[2:]},
                "recovers_vs_all_known": {p: s.recovers(p, strict=True) for p in MODELS[2:]},
                "why_not": {p: s.why_not(p) for p in MODELS[2:] if not s.recovers(p)},
                "cells": [asdict(c) for c in cells[s.scenario]],
            }
            for s in summaries
        ],
        "cross_validation": {str(seed): f.subtopics for seed, f in folds.items()},
        "seconds": seconds,
        "cpu_seconds": cpu,
    }
    with open(args.json, "w", encoding="utf-8") as out:
        json.dump(report, out, indent=2)


if __name__ == "__main__":
    main()
