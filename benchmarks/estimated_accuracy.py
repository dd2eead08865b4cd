"""Label-free accuracy on drifted traffic: driftloop's ``estimated_accuracy`` against realized
accuracy, side by side with plain CBPE (the window's mean calibrated confidence) and NannyML's
CBPE (the real package, in its own venv) on the same windows.

For each held-out set of subtopics of the bundled reviews (``build_scenario``), v1 is trained
with the sklearn trainer on snapshot 1; its held-out split is the reference of every estimator
(driftloop's threshold and its "may not hold" tests, NannyML's calibration). Windows of
``--window`` predictions are drawn (with replacement) from traffic no snapshot holds, a share
``--mixes`` of them from the held-out subtopics (0: no change). For each window: realized
accuracy, the three estimates, and whether driftloop says its estimate holds.

    .venv/bin/python benchmarks/estimated_accuracy.py               # 8 drifts, 1-2 minutes
    .venv/bin/python benchmarks/estimated_accuracy.py --quick       # 2 drifts
    .venv/bin/python benchmarks/estimated_accuracy.py --markdown    # tables for the docs
    .venv/bin/python benchmarks/estimated_accuracy.py --pairs       # v2 against v1 (verification)

NannyML runs as ``--nannyml-python benchmarks/nannyml_cbpe.py`` (default
``.venv-nannyml/bin/python``, made by ``make .venv-nannyml/.installed``); without it the
NannyML column says so.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from rich.console import Console

from driftloop.config import ModelConfig
from driftloop.demo.scenario import build_scenario
from driftloop.drift.estimated_accuracy import estimate_window
from driftloop.predictors import Predictor, ReferenceProfile
from driftloop.trainers.base import TrainingData
from driftloop.trainers.holdout import label_indices, split_for_training
from driftloop.trainers.registry import get_trainer
from tables import print_rows

HERE = Path(__file__).resolve().parent
SCENARIOS: tuple[tuple[str, ...], ...] = (
    ("imdb_user_review",),
    ("critic_snippet",),
    ("restaurant",),
    ("dresses",),
    ("coffee_tea", "tops"),
    ("review_title",),
    ("snacks_sweets",),
    ("restaurant", "review_title"),
)
"""The drifts of benchmarks/default_triggers.py and benchmarks/scenario_matrix.py."""


@dataclass(frozen=True)
class Scored:
    """A pool of rows with the model's probabilities, true classes and input signals."""

    probabilities: NDArray[np.float64]
    truth: NDArray[np.int64]
    signals: dict[str, NDArray[np.float64]]

    def take(self, index: NDArray[np.int64]) -> Scored:
        return Scored(
            self.probabilities[index],
            self.truth[index],
            {name: values[index] for name, values in self.signals.items()},
        )

    @staticmethod
    def join(parts: list[Scored]) -> Scored:
        return Scored(
            np.concatenate([p.probabilities for p in parts]),
            np.concatenate([p.truth for p in parts]),
            {name: np.concatenate([p.signals[name] for p in parts]) for name in parts[0].signals},
        )


@dataclass
class Window:
    scenario: str
    mix: float
    realized: float
    cbpe: float
    driftloop: float
    holds: bool
    nannyml: float | None = None


@dataclass(frozen=True)
class Model:
    predictor: Predictor
    reference: ReferenceProfile
    held_out: Scored
    known: Scored
    drifted: Scored


def score(predictor: Predictor, frame: pd.DataFrame) -> Scored:
    texts = frame["text"].astype(str).tolist()
    signals = {"text_length": np.asarray([len(t) for t in texts], dtype=np.float64)}
    signals.update(predictor.input_signals(texts))
    return Scored(
        predictor.predict_proba(texts), label_indices(frame, "label", predictor.labels), signals
    )


def train(drifting: tuple[str, ...], trainer: str, seed: int) -> Model:
    scenario = build_scenario(drifting=drifting, seed=seed)
    trained = get_trainer(trainer, ModelConfig(trainer=trainer, data="reviews")).fit(
        TrainingData(scenario.snapshot_1, "text", "label")
    )
    held_out = split_for_training(scenario.snapshot_1, "label").held_out  # the trainer's split
    predictor = trained.predictor
    return Model(
        predictor,
        trained.reference,
        score(predictor, held_out),
        score(predictor, scenario.known_traffic),
        score(predictor, scenario.drifted_traffic),
    )


def draw(model: Model, mix: float, size: int, rng: np.random.Generator) -> Scored:
    drifted = round(mix * size)
    return Scored.join(
        [
            model.known.take(rng.integers(0, len(model.known.truth), size - drifted)),
            model.drifted.take(rng.integers(0, len(model.drifted.truth), drifted)),
        ]
    )


def judge(model: Model, name: str, mix: float, window: Scored) -> Window:
    confidence = window.probabilities.max(axis=1)
    signals = {"model_confidence": confidence, **window.signals}
    estimate = estimate_window(model.reference, signals)
    realized = float(np.mean(window.probabilities.argmax(axis=1) == window.truth))
    return Window(name, mix, realized, float(confidence.mean()), estimate.accuracy, estimate.holds)


def nannyml_frame(scored: Scored, labels: tuple[str, ...]) -> pd.DataFrame:
    classes = [f"c{i}" for i in range(len(labels))]
    frame = pd.DataFrame(scored.probabilities, columns=[f"p_{c}" for c in classes])
    frame["y_pred"] = np.asarray(classes)[scored.probabilities.argmax(axis=1)]
    frame["y_true"] = np.asarray(classes)[scored.truth]
    return frame


def run_nannyml(
    python: Path, jobs: list[tuple[Model, list[Scored], list[Window]]], size: int
) -> str:
    """Fill each window's ``nannyml`` estimate; returns NannyML's version."""
    with tempfile.TemporaryDirectory(prefix="driftloop-nannyml-") as tmp:
        directories = []
        for number, (model, windows, _) in enumerate(jobs):
            directory = Path(tmp) / str(number)
            directory.mkdir()
            labels = model.predictor.labels
            nannyml_frame(model.held_out, labels).to_csv(directory / "reference.csv", index=False)
            pd.concat([nannyml_frame(w, labels) for w in windows]).to_csv(
                directory / "analysis.csv", index=False
            )
            (directory / "meta.json").write_text(
                json.dumps({"classes": [f"c{i}" for i in range(len(labels))], "window_size": size})
            )
            directories.append(directory)
        subprocess.run(
            [str(python), str(HERE / "nannyml_cbpe.py"), *map(str, directories)], check=True
        )
        version = ""
        for directory, (_, _, judged) in zip(directories, jobs, strict=True):
            result = json.loads((directory / "nannyml.json").read_text())
            version = result["version"]
            for window, value in zip(judged, result["estimates"], strict=True):
                window.nannyml = value
        return version


def error(windows: list[Window], method: str) -> NDArray[np.float64]:
    values = [getattr(w, method) for w in windows]
    if any(v is None for v in values):
        return np.asarray([], dtype=np.float64)
    realized = np.asarray([w.realized for w in windows], dtype=np.float64)
    errors: NDArray[np.float64] = np.abs(np.asarray(values, dtype=np.float64) - realized)
    return errors


def points(errors: NDArray[np.float64], statistic: str) -> str:
    if errors.size == 0:
        return "-"
    if statistic == "within":
        return f"{np.mean(errors <= 0.03):.0%}"
    value = float(np.mean(errors) if statistic == "mean" else np.max(errors))
    return f"{value * 100:.1f}"


def detail_rows(windows: list[Window], mixes: list[float]) -> list[list[str]]:
    rows = []
    for name in dict.fromkeys(w.scenario for w in windows):
        for mix in mixes:
            group = [w for w in windows if w.scenario == name and w.mix == mix]

            def mean(method: str, group: list[Window] = group) -> str:
                values = [getattr(w, method) for w in group]
                return "-" if None in values else f"{np.mean(values):.3f}"

            rows.append(
                [
                    name,
                    f"{mix:.0%}",
                    mean("realized"),
                    mean("driftloop"),
                    f"{np.mean([w.holds for w in group]):.0%}",
                    mean("cbpe"),
                    mean("nannyml"),
                ]
            )
    return rows


def summary_rows(windows: list[Window]) -> list[list[str]]:
    drifted = [w for w in windows if w.mix > 0]
    trusted = [w for w in drifted if w.holds]
    unchanged = [w for w in windows if w.mix == 0]
    rows = []
    for label, group in (
        ("drifted", drifted),
        ("drifted, estimate holds", trusted),
        ("drifted, may not hold", [w for w in drifted if not w.holds]),
        ("no change", unchanged),
    ):
        for method, title in (
            ("driftloop", "driftloop"),
            ("cbpe", "mean confidence"),
            ("nannyml", "NannyML CBPE"),
        ):
            errors = error(group, method)
            rows.append(
                [
                    label,
                    str(len(group)),
                    title,
                    points(errors, "mean"),
                    points(errors, "max"),
                    points(errors, "within"),
                ]
            )
    flagged = np.mean([not w.holds for w in unchanged]) if unchanged else float("nan")
    rows.append(
        [
            "no change, flagged 'may not hold'",
            str(len(unchanged)),
            "driftloop",
            f"{flagged:.1%} of windows",
            "",
            "",
        ]
    )
    return rows


def pair_rows(trainer: str, seed: int, quick: bool) -> list[list[str]]:
    """Verification's question on each drift: is v2 (trained on snapshot 2) better than v1 on
    the drifted traffic? Realized, by the estimate, and by confidence relative to each
    version's own reference (what verification uses without labels)."""
    rows = []
    for drifting in SCENARIOS[:2] if quick else SCENARIOS:
        scenario = build_scenario(drifting=drifting, seed=seed)
        measured = []
        for snapshot in (scenario.snapshot_1, scenario.snapshot_2):
            trained = get_trainer(trainer, ModelConfig(trainer=trainer, data="reviews")).fit(
                TrainingData(snapshot, "text", "label")
            )
            scored = score(trained.predictor, scenario.drifted_traffic)
            confidence = scored.probabilities.max(axis=1)
            window = {"model_confidence": confidence, **scored.signals}
            measured.append(
                (
                    float(np.mean(scored.probabilities.argmax(axis=1) == scored.truth)),
                    estimate_window(trained.reference, window).accuracy,
                    float(confidence.mean()) - trained.reference.mean_confidence,
                )
            )
        (r1, e1, c1), (r2, e2, c2) = measured
        rows.append(
            [
                "+".join(drifting),
                f"{r1:.3f} → {r2:.3f}",
                f"{r2 - r1:+.3f}",
                f"{e1:.3f} → {e2:.3f}",
                f"{e2 - e1:+.3f}",
                f"{c2 - c1:+.3f}",
            ]
        )
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainer", default="sklearn")
    parser.add_argument("--window", type=int, default=500, help="predictions per window")
    parser.add_argument("--windows", type=int, default=5, help="windows per drift and mix")
    parser.add_argument("--mixes", type=float, nargs="+", default=[1.0, 0.5, 0.2, 0.0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="two drifts only")
    parser.add_argument(
        "--nannyml-python", type=Path, default=HERE.parent / ".venv-nannyml" / "bin" / "python"
    )
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument(
        "--pairs",
        action="store_true",
        help="only compare v1 and v2 (trained on snapshot 2) on drifted traffic",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    console = Console()
    if args.pairs:
        print_pairs(args, console)
        return
    jobs = judged_windows(args)
    version = "not installed"
    if args.nannyml_python.exists():
        version = "NannyML " + run_nannyml(args.nannyml_python, jobs, args.window)
    windows = [w for _, _, judged in jobs for w in judged]
    title = (
        f"{args.trainer} trainer, windows of {args.window} predictions, "
        f"{args.windows} per drift and mix; {version}"
    )
    print_rows(
        console,
        ["drift", "drifted share", "realized", "driftloop", "holds", "mean confidence", "NannyML"],
        detail_rows(windows, args.mixes),
        markdown=args.markdown,
        title="Mean over windows: " + title,
    )
    if args.markdown:
        print()
    print_rows(
        console,
        ["windows", "n", "estimate", "mean |error| (points)", "max |error|", "within 3 points"],
        summary_rows(windows),
        markdown=args.markdown,
        title=title,
    )


def print_pairs(args: argparse.Namespace, console: Console) -> None:
    """``--pairs``: v1 against v2 (trained on snapshot 2) on each drift's traffic."""
    print_rows(
        console,
        [
            "drift",
            "realized v1 → v2",
            "difference",
            "estimated v1 → v2",
            "difference",
            "relative confidence difference",
        ],
        pair_rows(args.trainer, args.seed, args.quick),
        markdown=args.markdown,
        title=f"v2 against v1 on drifted traffic ({args.trainer})",
    )


def judged_windows(args: argparse.Namespace) -> list[tuple[Model, list[Scored], list[Window]]]:
    """Per drift: its model, the windows drawn at every mix, and driftloop's estimate of each."""
    rng = np.random.default_rng(args.seed)
    jobs: list[tuple[Model, list[Scored], list[Window]]] = []
    for drifting in SCENARIOS[:2] if args.quick else SCENARIOS:
        model = train(drifting, args.trainer, args.seed)
        name = "+".join(drifting)
        drawn = [
            (mix, draw(model, mix, args.window, rng))
            for mix in args.mixes
            for _ in range(args.windows)
        ]
        jobs.append(
            (model, [w for _, w in drawn], [judge(model, name, mix, w) for mix, w in drawn])
        )
    return jobs


if __name__ == "__main__":
    main()
