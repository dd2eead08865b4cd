"""The closed loop on many drifts: the real demo (server, traffic, monitors, pipeline) run once
per held-out subtopic set, with the `driftloop init` defaults.

For each scenario: was the drift detected, was the candidate kept, and how close is the final
version's accuracy on the drifted traffic to v1's accuracy on the traffic before the drift
(issue 17 asks for 2 points, or a reason)?

    .venv/bin/python benchmarks/scenario_matrix.py                        # sklearn, 6 drifts
    .venv/bin/python benchmarks/scenario_matrix.py --trainer transformers # minutes each
    .venv/bin/python benchmarks/scenario_matrix.py --markdown
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from driftloop.demo.config import DemoOptions
from driftloop.demo.runner import run_demo
from tables import print_rows

SCENARIOS: tuple[tuple[str, ...], ...] = (
    ("imdb_user_review",),
    ("critic_snippet",),
    ("restaurant",),
    ("review_title",),
    ("snacks_sweets",),
    ("restaurant", "review_title"),
)
"""Held-out subtopic sets whose drift costs the first model accuracy (benchmarks/
default_triggers.py and benchmarks/retrain_policy.py measure which do)."""


def run_scenario(
    drifting: tuple[str, ...], *, trainer: str, speed: float, directory: Path
) -> dict[str, Any]:
    """One closed-loop run; returns the demo's summary with the verdicts."""
    with (directory / "console.txt").open("w") as console_file:
        result = run_demo(
            DemoOptions(
                trainer=trainer,
                speed=speed,
                out=directory / "out",
                open_browser=False,
                project_dir=directory / "project",
                timeout=600.0,
                drifting=drifting,
            ),
            Console(file=console_file, width=120),
        )
    summary = result.summary
    jobs = summary["jobs"]
    verdicts = [
        (job.get("result") or {}).get("verification_decision", {}).get("verdict") for job in jobs
    ]
    return {
        **summary,
        "closed": result.closed,
        "verdicts": verdicts,
        "detected": summary["seconds_to_drift_detector"] is not None
        or summary["seconds_to_alert"] is not None,
    }


def gap_reason(summary: dict[str, Any]) -> str:
    before, after = summary["accuracy_pre_drift"], summary["accuracy_after_retrain"]
    if before is None or after is None:
        return "no accuracy measured"
    gap = before - after
    if gap <= 0.02:
        return "within 2 points"
    v1 = summary["accuracy_drifted_traffic"].get("1")
    return (
        f"{gap * 100:.1f} points short: the new subtopics stay harder than the old ones "
        f"for this model (v1 on them {v1:.3f})"
        if v1 is not None
        else f"{gap * 100:.1f} points short"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainer", default="sklearn")
    parser.add_argument("--speed", type=float, default=30.0)
    parser.add_argument(
        "--scenarios", nargs="+", default=None, help="held-out sets, subtopics joined by '+'"
    )
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    scenarios = (
        SCENARIOS if args.scenarios is None else tuple(tuple(s.split("+")) for s in args.scenarios)
    )
    console = Console(width=200)
    rows: list[list[str]] = []
    started = time.perf_counter()
    for drifting in scenarios:
        with tempfile.TemporaryDirectory(prefix="driftloop-matrix-") as directory:
            summary = run_scenario(
                drifting, trainer=args.trainer, speed=args.speed, directory=Path(directory)
            )

        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.3f}"

        rows.append(
            [
                "+".join(drifting),
                "yes" if summary["detected"] else "no",
                ", ".join(str(v) for v in summary["verdicts"]) or "no job",
                str(summary["final_production_version"]),
                fmt(summary["accuracy_pre_drift"]),
                fmt(summary["accuracy_drifted_traffic"].get("1")),
                fmt(summary["accuracy_after_retrain"]),
                gap_reason(summary),
                "yes" if summary["closed"] else "no: " + "; ".join(summary["reasons"]),
            ]
        )
        console.print(f"{'+'.join(drifting)}: {rows[-1]} ({time.perf_counter() - started:.0f}s)")
    headers = [
        "held out",
        "detected",
        "verification",
        "final version",
        "v1 before drift",
        "v1 after drift",
        "final after retrain",
        "gap",
        "loop closed",
    ]
    print_rows(
        console,
        headers,
        rows,
        markdown=args.markdown,
        title=f"closed loop per drift ({args.trainer}, x{args.speed:g})",
    )
    console.print(f"took {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
