"""The monitors ``driftloop init`` writes: how soon they call @retrain on a drift, and how rarely
on traffic that does not change.

The monitors are read from the template itself (``driftloop init``'s driftloop.yaml): the
confidence threshold (window mean below ``reference - 0.05``), the CUSUM drift detector and the
realized-accuracy threshold, each routing ``@retrain`` on ALERT. For each scenario, a held-out
set of subtopics of the bundled reviews (``driftloop.demo.scenario.build_scenario``), v1 is
trained with the library's sklearn trainer on snapshot 1; its real predictions on traffic rows
that no snapshot holds give the streams:

* **no change**: 24 simulated hours at ``--rate`` predictions per second, resampled from v1's
  predictions on known traffic; every ALERT of any signal is a false retrain;
* **drift**: a share (``--mixes``: all, half, a fifth) of the traffic shifts to the held-out
  subtopics: the time from the shift to each signal's first ALERT, in 5-minute windows, over
  the 3 hours after the shift.

The template's drift monitor of the inputs (``embedding_typicality``, a one-sided CUSUM) is
among them. Beside them, the KS tests of the inputs that docs/drift.md shows
(:data:`INPUT_MONITORS`: KS tests of ``text_length`` and ``oov_rate``; ``--inputs-only`` runs
them alone; ``--defaults-only`` leaves them out), and, after each scenario, v2 (trained on
snapshot 2) on an hour of fully drifted traffic: which signals still
fire once the model has learned the drift.

Labels arrive for ``--label-share`` of the predictions (realized accuracy). The engine evaluates
every ``--interval`` seconds over its sliding windows, as ``driftloop up`` does.

    .venv/bin/python benchmarks/default_triggers.py              # full run (a few minutes)
    .venv/bin/python benchmarks/default_triggers.py --quick      # smoke run (2 scenarios, 2 h)
    .venv/bin/python benchmarks/default_triggers.py --markdown   # the table for the docs
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from rich.console import Console

from driftloop.config import ModelConfig, MonitorConfig, parse_config
from driftloop.demo.scenario import build_scenario
from driftloop.drift.factory import build_detector
from driftloop.drift.window import WindowTestDetector
from driftloop.monitors.thresholds import reference_value, resolve_thresholds
from driftloop.predictors import ReferenceProfile
from driftloop.project import default_config_text
from driftloop.trainers.base import TrainingData
from driftloop.trainers.registry import get_trainer
from tables import print_rows

SCENARIOS: tuple[tuple[str, ...], ...] = (
    ("imdb_user_review",),
    ("critic_snippet",),
    ("restaurant",),
    ("dresses",),
    ("coffee_tea", "tops"),
    ("review_title",),
)
"""Held-out subtopic sets: each keeps every class in snapshot 1 (the other subtopics of its
domain stay), chosen as one per domain plus the title-only reviews and a two-domain pair."""

WINDOW_SECONDS = 300.0


@dataclass(frozen=True)
class Streams:
    reference: ReferenceProfile
    known_confidence: NDArray[np.float64]
    known_correct: NDArray[np.float64]
    drifted_confidence: NDArray[np.float64]
    drifted_correct: NDArray[np.float64]
    known_inputs: dict[str, NDArray[np.float64]]
    drifted_inputs: dict[str, NDArray[np.float64]]
    """Per input metric (``text_length`` and the predictor's input signals): per text."""


@dataclass(frozen=True)
class Monitors:
    confidence: MonitorConfig
    drift: MonitorConfig
    accuracy: MonitorConfig
    inputs: list[MonitorConfig]
    """Drift monitors on the inputs (:data:`INPUT_MONITORS`: not in the template)."""


INPUT_MONITORS: list[dict[str, Any]] = [
    {
        "name": f"input {metric} drift",
        "type": "drift",
        "metric": metric,
        "group_by": ["model", "version"],
        "detector": {"algorithm": "ks", "window": 1000, "false_alarm_rate": 1e-9},
    }
    for metric in ("text_length", "oov_rate")
]
"""The monitors of the inputs measured beside the template's (docs/drift.md shows them): a KS
test of each window of 1,000 texts, tested every 200, at 1e-9 false alarms per prediction."""


def template_monitors(*, ks_inputs: bool = True) -> Monitors:
    """The template's monitors; its drift monitors of the inputs (``embedding_typicality``)
    first among ``inputs``, then (``ks_inputs``) the KS tests of :data:`INPUT_MONITORS`."""
    config = parse_config(default_config_text(), source="driftloop init", environ={})
    by_metric = {(m.type, m.metric): m for m in config.monitors}
    inputs = [m for m in config.monitors if m.type == "drift" and m.metric != "model_confidence"]
    if ks_inputs:
        inputs += [MonitorConfig.model_validate(m) for m in INPUT_MONITORS]
    return Monitors(
        by_metric[("threshold", "model_confidence")],
        by_metric[("drift", "model_confidence")],
        by_metric[("threshold", "prediction_correct")],
        inputs,
    )


def model_streams(drifting: tuple[str, ...], seed: int, *, retrained: bool = False) -> Streams:
    """v1's streams (``retrained``: v2's, trained on snapshot 2, which holds the drift)."""
    scenario = build_scenario(drifting=drifting, seed=seed)
    model = ModelConfig(trainer="sklearn", data="reviews")
    frame = scenario.snapshot_2 if retrained else scenario.snapshot_1
    trained = get_trainer("sklearn", model).fit(
        TrainingData(frame, "text", "label", "bench", "bench")
    )
    predictor = trained.predictor
    assert trained.reference is not None

    def score(traffic: pd.DataFrame) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        probabilities = predictor.predict_proba(traffic["text"].astype(str).tolist())
        predicted = np.asarray(predictor.labels)[probabilities.argmax(axis=1)]
        correct = (predicted == traffic["label"].astype(str).to_numpy()).astype(np.float64)
        return probabilities.max(axis=1), correct

    def inputs(traffic: pd.DataFrame) -> dict[str, NDArray[np.float64]]:
        texts = traffic["text"].astype(str).tolist()
        lengths = np.array([len(text) for text in texts], dtype=np.float64)
        return {"text_length": lengths, **predictor.input_signals(texts)}

    known = score(scenario.known_traffic)
    drifted = score(scenario.drifted_traffic)
    return Streams(
        trained.reference,
        *known,
        *drifted,
        inputs(scenario.known_traffic),
        inputs(scenario.drifted_traffic),
    )


@dataclass
class Alarms:
    confidence: list[float]
    drift: list[float]
    accuracy: list[float]
    inputs: dict[str, list[float]]
    """Seconds (since the stream began) at which each signal went ALERT."""

    def first_after(self, start: float) -> dict[str, float | None]:
        signals = [
            ("confidence", self.confidence),
            ("drift", self.drift),
            ("accuracy", self.accuracy),
            *self.inputs.items(),
        ]
        return {
            name: next((t - start for t in times if t >= start), None) for name, times in signals
        }


def simulate(
    monitors: Monitors,
    streams: Streams,
    *,
    seconds: float,
    shift_at: float | None,
    mix: float,
    rate: float,
    label_share: float,
    interval: float,
    rng: np.random.Generator,
    inputs_only: bool = False,
) -> Alarms:
    """One stream of ``seconds`` at ``rate`` predictions/s, drifting at ``shift_at``
    (``inputs_only``: the monitors of the inputs alone)."""
    n = int(seconds * rate)
    times = np.arange(n) / rate
    drifted = np.zeros(n, dtype=bool)
    if shift_at is not None:
        drifted = (times >= shift_at) & (rng.random(n) < mix)
    known_index = rng.integers(0, streams.known_confidence.size, n)
    drifted_index = rng.integers(0, streams.drifted_confidence.size, n)
    confidence = np.where(
        drifted, streams.drifted_confidence[drifted_index], streams.known_confidence[known_index]
    )
    correct = np.where(
        drifted, streams.drifted_correct[drifted_index], streams.known_correct[known_index]
    )
    labelled = rng.random(n) < label_share

    alarms = Alarms([], [], [], {m.metric: [] for m in monitors.inputs})
    for monitor in monitors.inputs:
        values = np.where(
            drifted,
            streams.drifted_inputs[monitor.metric][drifted_index],
            streams.known_inputs[monitor.metric][known_index],
        )
        detect(monitor, streams.reference, values, rate, alarms.inputs[monitor.metric])
    if inputs_only:
        return alarms
    detect(monitors.drift, streams.reference, confidence, rate, alarms.drift)

    cumulative = np.concatenate([[0.0], np.cumsum(confidence)])
    labelled_sum = np.concatenate([[0.0], np.cumsum(correct * labelled)])
    labelled_count = np.concatenate([[0], np.cumsum(labelled)])
    for monitor, sums, counts, found in (
        (monitors.confidence, cumulative, None, alarms.confidence),
        (monitors.accuracy, labelled_sum, labelled_count, alarms.accuracy),
    ):
        found.extend(
            threshold_alerts(monitor, streams.reference, sums, counts, seconds, rate, interval)
        )
    return alarms


def threshold_alerts(
    monitor: MonitorConfig,
    reference: ReferenceProfile,
    sums: NDArray[np.float64],
    counts: NDArray[np.int64] | None,
    seconds: float,
    rate: float,
    interval: float,
) -> list[float]:
    """When a threshold monitor goes to ALERT, evaluated every ``interval`` seconds on its
    window's mean (from the cumulative ``sums`` and, for labelled values, ``counts``)."""
    critical = resolve_thresholds(
        monitor, reference_value(reference, monitor.metric, monitor.aggregation)
    ).critical
    assert critical is not None
    found: list[float] = []
    alerting = False
    for now in np.arange(interval, seconds, interval):  # a window fills as time goes
        end, start = int(now * rate), int(max(0.0, now - monitor.window) * rate)
        count = end - start if counts is None else int(counts[end] - counts[start])
        if count < monitor.min_count:
            continue
        mean = (sums[end] - sums[start]) / count
        breached = mean < critical
        if breached and not alerting:
            found.append(float(now))
        alerting = breached
    return found


def detect(
    monitor: MonitorConfig,
    reference: ReferenceProfile,
    values: NDArray[np.float64],
    rate: float,
    found: list[float],
) -> None:
    """Feed ``values`` to the monitor's detector; note when each drift is found."""
    assert monitor.detector is not None
    detector = build_detector(monitor.detector, reference, metric=monitor.metric)
    if isinstance(detector, WindowTestDetector):
        found.extend(i / rate for i in window_test_alarms(detector, values))
        return
    for i, value in enumerate(values.tolist()):
        detector.update(value)
        if detector.drift_detected:
            found.append(i / rate)


def window_test_alarms(detector: WindowTestDetector, values: NDArray[np.float64]) -> list[int]:
    """The indices at which ``detector.update`` would detect, tested window by window instead
    of value by value (the same tests: the first once ``window`` values have come, then every
    ``step``; after a detection the window refills)."""
    alarms: list[int] = []
    end = detector.window
    while end <= values.size:
        result = detector._test(values[end - detector.window : end])
        if result.p_value < detector.alpha:
            alarms.append(end - 1)
            end += detector.window
        else:
            end += detector.step
    return alarms


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rate",
        type=float,
        default=170.0,
        help="predictions per second (the sklearn demo sends about 170)",
    )
    parser.add_argument("--hours", type=float, default=24.0, help="no-change stream length")
    parser.add_argument(
        "--label-share",
        type=float,
        default=0.1,
        help="share of predictions whose true label comes back",
    )
    parser.add_argument(
        "--interval", type=float, default=5.0, help="seconds between monitor evaluations"
    )
    parser.add_argument(
        "--mixes",
        type=float,
        nargs="+",
        default=[1.0, 0.5, 0.2],
        help="share of the traffic that drifts after the shift",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="2 scenarios, 2 hours")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument(
        "--held-out",
        nargs="+",
        default=None,
        help="only these scenarios (e.g. restaurant coffee_tea+tops)",
    )
    parser.add_argument(
        "--inputs-only",
        action="store_true",
        help="the monitors of the inputs alone (the others' columns show -)",
    )
    parser.add_argument(
        "--defaults-only",
        action="store_true",
        help="the template's monitors only (no KS tests of the inputs)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    scenarios = SCENARIOS[:2] if args.quick else SCENARIOS
    if args.held_out:
        scenarios = tuple(s for s in scenarios if "+".join(s) in args.held_out)
    hours = 2.0 if args.quick else args.hours
    console = Console(width=200)
    monitors = template_monitors(ks_inputs=not args.defaults_only)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    rows: list[list[str]] = []
    retrained: list[list[str]] = []
    for drifting in scenarios:
        streams = model_streams(drifting, args.seed)
        quiet = simulate(
            monitors,
            streams,
            seconds=hours * 3600,
            shift_at=None,
            mix=0.0,
            rate=args.rate,
            label_share=args.label_share,
            interval=args.interval,
            rng=rng,
            inputs_only=args.inputs_only,
        )
        rows += [
            drift_row(monitors, streams, drifting, mix, quiet, args, rng) for mix in args.mixes
        ]
        retrained.append(after_retrain(monitors, drifting, args))
        console.print(
            f"{'+'.join(drifting)} done ({time.perf_counter() - started:.0f}s): "
            f"{rows[-len(args.mixes) :]} {retrained[-1]}",
            soft_wrap=True,
        )
    print_tables(console, monitors, rows, retrained, hours, args)
    console.print(f"took {time.perf_counter() - started:.0f}s")


def drift_row(
    monitors: Monitors,
    streams: Streams,
    drifting: tuple[str, ...],
    mix: float,
    quiet: Alarms,
    args: argparse.Namespace,
    rng: np.random.Generator,
) -> list[str]:
    """One drift (``mix`` of the traffic shifts to the held-out subtopics): the accuracy and
    confidence before and after, each signal's first ALERT after the shift (in windows), and
    the no-change stream's false ALERTs."""
    shift = 2 * WINDOW_SECONDS
    drift = simulate(
        monitors,
        streams,
        seconds=shift + 3 * 3600,
        shift_at=shift,
        mix=mix,
        rate=args.rate,
        label_share=args.label_share,
        interval=args.interval,
        rng=rng,
        inputs_only=args.inputs_only,
    )
    before = float(streams.known_correct.mean())
    after = float((1 - mix) * before + mix * streams.drifted_correct.mean())
    firsts = drift.first_after(shift)
    conf_before = float(streams.known_confidence.mean())
    conf_after = float((1 - mix) * conf_before + mix * streams.drifted_confidence.mean())

    others = not args.inputs_only
    retrain_signals = [] if args.inputs_only else ["drift", "confidence", "accuracy"]
    ks_names = {ks["name"] for ks in INPUT_MONITORS}
    retrain_signals += [m.metric for m in monitors.inputs if m.name not in ks_names]
    caught = [first for name in retrain_signals if (first := firsts[name]) is not None]

    return [
        "+".join(drifting),
        f"{mix:g}",
        f"{before:.3f} → {after:.3f}",
        f"{conf_before:.3f} → {conf_after:.3f} (ref {streams.reference.mean_confidence:.3f})",
        windows(firsts["drift"], others),
        windows(firsts["confidence"], others),
        windows(firsts["accuracy"], others),
        *(windows(firsts[m.metric]) for m in monitors.inputs),
        windows(min(caught) if caught else None),
        alarm_counts(quiet, args.inputs_only),
    ]


def windows(value: float | None, run: bool = True) -> str:
    """A delay in windows ("never": no ALERT; "-": the signal was not run)."""
    if not run:
        return "-"
    return "never" if value is None else f"{value / WINDOW_SECONDS:.2f}"


def print_tables(
    console: Console,
    monitors: Monitors,
    rows: list[list[str]],
    retrained: list[list[str]],
    hours: float,
    args: argparse.Namespace,
) -> None:
    """The drift table (time to each signal's first ALERT, false ALERTs) and the table of v2
    on the drifted traffic."""
    headers = [
        "held out",
        "drifted share",
        "accuracy before → after",
        "mean confidence before → after",
        "CUSUM (windows)",
        "confidence (windows)",
        "realized accuracy (windows)",
        *(
            f"{m.metric} {m.detector.algorithm.upper()} (windows)"  # type: ignore[union-attr]
            for m in monitors.inputs
        ),
        "first @retrain of the defaults (windows)",
        f"false ALERTs in {hours:g} h (CUSUM / conf. / acc."
        f"{''.join(' / ' + m.metric for m in monitors.inputs)})",
    ]
    print_rows(
        console,
        headers,
        rows,
        markdown=args.markdown,
        title=f"init defaults at {args.rate:g} predictions/s, labels on {args.label_share:.0%}",
    )
    print_rows(
        console,
        [
            "held out",
            "v2 accuracy on the drifted traffic",
            "ALERTs in 1 h of it (CUSUM / conf. / acc."
            f"{''.join(' / ' + m.metric for m in monitors.inputs)})",
        ],
        retrained,
        markdown=args.markdown,
        title="after the retrain: v2 (trained on snapshot 2) on the drifted traffic",
    )


def after_retrain(
    monitors: Monitors, drifting: tuple[str, ...], args: argparse.Namespace
) -> list[str]:
    """v2, trained on snapshot 2 (which holds the held-out subtopics), serving one hour of
    traffic that has fully drifted: which signals still ALERT (a retrain cannot cure them)."""
    streams = model_streams(drifting, args.seed, retrained=True)
    alarms = simulate(
        monitors,
        streams,
        seconds=3600.0,
        shift_at=0.0,
        mix=1.0,
        rate=args.rate,
        label_share=args.label_share,
        interval=args.interval,
        rng=np.random.default_rng(args.seed),
        inputs_only=args.inputs_only,
    )
    return [
        "+".join(drifting),
        f"{streams.drifted_correct.mean():.3f}",
        alarm_counts(alarms, args.inputs_only),
    ]


def alarm_counts(alarms: Alarms, inputs_only: bool) -> str:
    """ALERTs per signal: CUSUM / confidence / accuracy / each input ("-": not run)."""
    others = (
        ["-"] * 3
        if inputs_only
        else [str(len(found)) for found in (alarms.drift, alarms.confidence, alarms.accuracy)]
    )
    return " / ".join([*others, *(str(len(found)) for found in alarms.inputs.values())])


if __name__ == "__main__":
    main()
