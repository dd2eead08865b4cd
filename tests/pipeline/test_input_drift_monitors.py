"""The monitors of the inputs that docs/drift.md shows (KS tests of ``text_length`` and
``oov_rate``), run by the real monitor engine on what a real model reports for real reviews:
quiet on unchanged traffic, ALERT within a few windows of a moderate drift, and (routed to
``@log``, as the docs advise) no retrain."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from driftloop.config import load_config
from driftloop.demo.scenario import DemoScenario, build_scenario
from driftloop.metrics.points import MetricPoint
from driftloop.monitors.events import MonitorState
from driftloop.project import init_project
from driftloop.system import DriftloopSystem, SystemOptions
from driftloop.testing.clock import ManualClock
from driftloop.trainers.training import train_model
from pipeline.world import START

MODEL = "review-classifier"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "drift.md"
RATE = 20.0
WINDOW = 60.0
"""Seconds per window of the test: 1,200 predictions, a KS window (1,000) and then some."""


@functools.cache
def scenario() -> DemoScenario:
    return build_scenario(drifting=("imdb_user_review",), seed=3)


def documented_input_monitors() -> list[dict[str, object]]:
    """The YAML block of docs/drift.md that watches ``oov_rate``."""
    for block in re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.DOTALL):
        if "metric: oov_rate" in block:
            monitors: list[dict[str, object]] = yaml.safe_load(block)["monitors"]
            return monitors
    raise AssertionError(f"{DOCS} shows no monitor of oov_rate")


def send(
    system: DriftloopSystem,
    clock: ManualClock,
    texts: list[str],
    seconds: float,
    rng: np.random.Generator,
) -> None:
    """``seconds`` of traffic drawn from ``texts``, reported as the server reports it."""
    served = system.registry.resolve(MODEL, "production")
    predictor = system.registry.load_predictor(served)
    step = 5.0
    for _ in range(int(seconds / step)):
        drawn = [texts[i] for i in rng.integers(0, len(texts), int(RATE * step))]
        values = {
            "model_confidence": predictor.predict_proba(drawn).max(axis=1),
            "text_length": np.array([len(text) for text in drawn], dtype=np.float64),
            **predictor.input_signals(drawn),
        }
        stamps = clock.now + np.arange(len(drawn)) / RATE
        system.metric_store.write(
            [
                MetricPoint(
                    metric, float(value), float(t), {"model": MODEL, "version": str(served.version)}
                )
                for metric, column in values.items()
                for value, t in zip(column, stamps, strict=True)
            ]
        )
        clock.now += step
        system.engine.evaluate(clock.now)


def states(system: DriftloopSystem) -> dict[str, MonitorState]:
    return {
        status.name: group.state for status in system.engine.status() for group in status.groups
    }


@pytest.mark.slow
def test_the_documented_input_monitors_catch_a_moderate_drift(tmp_path: Path) -> None:
    clock = ManualClock(START)
    path = init_project(tmp_path)
    document = yaml.safe_load(path.read_text())
    document["monitors"] = documented_input_monitors()
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    config = load_config(path, environ={})
    system = DriftloopSystem(config, SystemOptions(clock=clock))
    system.datasets.push(scenario().snapshot_1, config.models[MODEL].data)
    train_model(config, MODEL, trigger="manual")
    rng = np.random.default_rng(0)
    known = scenario().known_traffic["text"].astype(str).tolist()
    drifted = scenario().drifted_traffic["text"].astype(str).tolist()
    moderate = (known + drifted * 3)[: int(len(known) / 0.7)]  # 30 % long IMDB reviews

    send(system, clock, known, 4 * WINDOW, rng)
    names = {str(m["name"]) for m in documented_input_monitors()}
    assert states(system) == dict.fromkeys(names, MonitorState.OK)
    send(system, clock, moderate, 3 * WINDOW, rng)
    assert states(system) == dict.fromkeys(names, MonitorState.ALERT)
    assert system.queue.list(model=MODEL) == []  # @log: seen, not retrained on
