"""Drift detectors side by side: driftloop's against river's and a windowed-average threshold.

Streams are top-class confidences of a synthetic calibrated classifier (a Beta mixture, mean
~0.85; see ``driftloop.drift.synthetic``). Each drift stream has 2,000 in-control values, then a
scenario: abrupt moderate drop (-0.05), abrupt severe drop (-0.15), gradual slide (to -0.10 over
2,000 values), shape change (same mean, more mass at low confidence). No-change streams measure
false alarms. Every detector that needs tuning is tuned, on separate no-change streams, to the
most sensitive setting that stays within the false-alarm budget (default 1 per 10,000 values).

    .venv/bin/python benchmarks/detectors.py            # full run (a few minutes)
    .venv/bin/python benchmarks/detectors.py --quick    # smoke run (well under a minute)
    .venv/bin/python benchmarks/detectors.py --markdown # tables for docs/benchmarks.md

Requires river (``pip install 'driftloop[dev]'``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from rich.console import Console

from detector_lineup import (
    N_AFTER,
    N_BEFORE,
    REFERENCE_SIZE,
    DetectorSpec,
    Tunable,
    competitors,
    our_detectors,
    tune,
)
from detector_report import render
from detector_runs import FULL, QUICK, Plan, evaluate, mean_oracle, oracle
from driftloop.drift.synthetic import (
    CALIBRATED_CLASSIFIER,
    confidence_scenarios,
)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter streams")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--seed", type=int, default=2024, help="random seed")
    parser.add_argument(
        "--budget", type=float, default=1.0, help="false alarms per 10,000 values allowed"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    began = time.perf_counter()
    console = Console(width=250 if args.markdown else None)
    rng = np.random.default_rng(args.seed)
    budget = args.budget
    false_alarm_rate = budget / 1e4

    references = [CALIBRATED_CLASSIFIER.sample(REFERENCE_SIZE, rng) for _ in range(plan.references)]
    drifting = [s for s in confidence_scenarios() if s.drifts]
    scenarios = [
        (s, [s.generate(N_BEFORE, N_AFTER, rng).tolist() for _ in range(plan.streams)])
        for s in drifting
    ]
    no_change = [
        CALIBRATED_CLASSIFIER.sample(plan.no_change_length, rng).tolist()
        for _ in range(plan.no_change_streams)
    ]
    tuning = [
        CALIBRATED_CLASSIFIER.sample(plan.tuning_length, rng).tolist()
        for _ in range(plan.tuning_streams)
    ]

    specs = our_detectors(false_alarm_rate)
    fixed, tunables = competitors()
    specs.extend(fixed)
    specs += tuned_competitors(tunables, references, tuning, plan, budget, console)
    results = []
    for spec in specs:
        started = time.perf_counter()
        slow = spec.max_streams is not None
        streams = no_change[: plan.slow_no_change_streams] if slow else no_change
        results.append(evaluate(spec, references, scenarios, streams))
        console.print(
            f"evaluated {spec.name} in {time.perf_counter() - started:.0f}s", markup=False
        )
    oracles = {
        scenario.name: oracle(scenario, streams, tuning, no_change, budget)
        for scenario, streams in scenarios
    }
    mean_oracles = {
        scenario.name: mean_oracle(scenario, references, streams, false_alarm_rate)
        for scenario, streams in scenarios
    }
    render(
        results, budget, [s.name for s in drifting], oracles, mean_oracles, args.markdown, console
    )
    console.print(
        f"\n{'quick' if args.quick else 'full'} run, seed {args.seed}, "
        f"{time.perf_counter() - began:.0f}s",
        markup=False,
    )


def tuned_competitors(
    tunables: list[Tunable],
    references: list[NDArray[np.float64]],
    tuning: list[list[float]],
    plan: Plan,
    budget: float,
    console: Console,
) -> list[DetectorSpec]:
    """Each competitor tuned to the budget on the tuning streams (a slow one on fewer)."""
    specs = []
    for tunable in tunables:
        streams = tuning
        if tunable.slow:
            streams = [t[: plan.slow_tuning_length] for t in tuning[: plan.slow_tuning_streams]]
        started = time.perf_counter()
        value, measured = tune(tunable, references, streams, budget)
        console.print(
            f"tuned {tunable.name}: {tunable.label}={value:.3g} "
            f"({measured:.2f} false alarms / 10k on tuning streams, "
            f"{time.perf_counter() - started:.0f}s)",
            markup=False,
        )
        specs.append(
            DetectorSpec(
                tunable.name,
                False,
                tunable.build(value),
                f"{tunable.label}={value:.3g} (tuned)",
                max_streams=plan.slow_streams if tunable.slow else None,
            )
        )
    return specs


if __name__ == "__main__":
    main()
