"""The monitors ``driftloop init`` writes, run by the real monitor engine on the confidences a
real model gives to real reviews: a moderate drift that costs the model several points of
accuracy queues a retrain within a few windows; unchanged traffic queues none.

The drift is one the demo never uses (restaurant reviews held out of v1's data), at a rate and
with only the window shortened, as a user trying the defaults would run them."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import yaml

from driftloop.config import load_config
from driftloop.demo.scenario import DemoScenario, build_scenario
from driftloop.metrics.points import MetricPoint
from driftloop.monitors.events import MonitorState
from driftloop.predictors.embedding import EMBEDDING_TYPICALITY
from driftloop.project import init_project
from driftloop.system import DriftloopSystem, SystemOptions
from driftloop.testing.clock import ManualClock
from driftloop.trainers.training import train_model
from pipeline.world import START

MODEL = "review-classifier"
HELD_OUT = ("restaurant",)
WINDOW = 60.0
RATE = 20.0
"""Predictions per second: 1,200 per window, over the template's ``min_count`` of 400."""


@functools.cache
def scenario() -> DemoScenario:
    return build_scenario(drifting=HELD_OUT, seed=3)


def init_system(directory: Path, clock: ManualClock) -> DriftloopSystem:
    """``driftloop init``'s config with only the windows shortened; v1 trained on data that
    lacks the held-out subtopic."""
    path = init_project(directory)
    document = yaml.safe_load(path.read_text())
    for monitor in document["monitors"]:
        if "window" in monitor:
            monitor["window"] = f"{WINDOW:g}s"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    config = load_config(path, environ={})
    system = DriftloopSystem(config, SystemOptions(clock=clock))
    system.datasets.push(scenario().snapshot_1, config.models[MODEL].data)
    train_model(config, MODEL, trigger="manual")
    return system


def send(
    system: DriftloopSystem,
    clock: ManualClock,
    texts: list[str],
    seconds: float,
    rng: np.random.Generator,
    *,
    metric: str = "model_confidence",
) -> None:
    """``seconds`` of traffic drawn from ``texts``, scored by production, as the server
    reports it (``metric``: its confidence, or one of its input signals); the engine evaluates
    every 5 s."""
    predictor = system.registry.load_predictor(system.registry.resolve(MODEL, "production"))
    version = str(system.registry.resolve(MODEL, "production").version)
    step = 5.0
    for _ in range(int(seconds / step)):
        drawn = [texts[i] for i in rng.integers(0, len(texts), int(RATE * step))]
        if metric == "model_confidence":
            values = predictor.predict_proba(drawn).max(axis=1)
        else:
            values = predictor.input_signals(drawn)[metric]
        stamps = clock.now + np.arange(len(drawn)) / RATE
        system.metric_store.write(
            [
                MetricPoint(metric, float(v), float(t), {"model": MODEL, "version": version})
                for v, t in zip(values, stamps, strict=True)
            ]
        )
        clock.now += step
        system.engine.evaluate(clock.now)


@pytest.mark.slow
def test_a_moderate_drift_with_the_init_defaults_leads_to_a_retrain(tmp_path: Path) -> None:
    clock = ManualClock(START)
    system = init_system(tmp_path, clock)
    rng = np.random.default_rng(0)
    data = scenario()
    known = data.known_traffic["text"].astype(str).tolist()
    # a moderate drift: 30% of the traffic is restaurant reviews, which v1 never saw
    moderate = known + data.drifted_traffic["text"].astype(str).tolist() * 3
    moderate = moderate[: int(len(known) / 0.7)]

    send(system, clock, known, 3 * WINDOW, rng)  # unchanged traffic: nothing fires
    assert system.queue.list(model=MODEL) == []
    assert all(
        group.state == MonitorState.OK
        for status in system.engine.status()
        for group in status.groups
        if status.name != "review-classifier realized accuracy"
    )

    shift = clock.now
    for _ in range(8):  # at most 4 windows
        send(system, clock, moderate, WINDOW / 2, rng)
        if system.queue.list(model=MODEL):
            break
    [job] = system.queue.list(model=MODEL)
    assert job.incident_id is not None
    assert clock.now - shift <= 4 * WINDOW
    incident = system.engine.get_incident(job.incident_id)
    assert incident.monitor in {
        "review-classifier confidence",
        "review-classifier confidence drift",
    }


@pytest.mark.slow
def test_input_drift_alone_with_the_init_defaults_leads_to_a_retrain(tmp_path: Path) -> None:
    """A model can be confidently wrong on texts it never saw; the init defaults' input-drift
    monitor catches the drift from the texts alone (here 40% of the traffic, which costs v1
    about 25 points; at 20% the confidence CUSUM is the first to fire)."""
    clock = ManualClock()
    system = init_system(tmp_path, clock)
    rng = np.random.default_rng(1)
    data = scenario()
    known = data.known_traffic["text"].astype(str).tolist()
    drifted = data.drifted_traffic["text"].astype(str).tolist()
    moderate = known + drifted * int(np.ceil(len(known) * 0.4 / 0.6 / len(drifted)))
    moderate = moderate[: int(len(known) / 0.6)]

    send(system, clock, known, WINDOW, rng, metric=EMBEDDING_TYPICALITY)  # CI time: one window
    assert system.queue.list(model=MODEL) == []
    shift = clock.now
    for _ in range(8):
        send(system, clock, moderate, WINDOW / 2, rng, metric=EMBEDDING_TYPICALITY)
        if system.queue.list(model=MODEL):
            break
    [job] = system.queue.list(model=MODEL)
    assert job.incident_id is not None
    assert clock.now - shift <= 4 * WINDOW
    assert system.engine.get_incident(job.incident_id).monitor == "review-classifier input drift"
