"""The demo's project: its driftloop.yaml (the `driftloop init` defaults with time compressed)
and its options; what it sets per trainer lives in :mod:`driftloop.demo.tuning`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from driftloop.config import Config, MonitorConfig, parse_duration
from driftloop.demo.receiver import NotificationReceiver
from driftloop.demo.scenario import DRIFTING_SUBTOPICS
from driftloop.demo.tabular.scenario import TABULAR_DATASET, TABULAR_MODEL
from driftloop.demo.tuning import TUNINGS, TrainerTuning, tuning_for
from driftloop.errors import ConfigError
from driftloop.messages import format_value
from driftloop.monitors.thresholds import resolve_thresholds
from driftloop.project import default_config_text

__all__ = [
    "CONFIDENCE_MONITOR",
    "DATASET",
    "DRIFT_MONITOR",
    "MODEL",
    "PRODUCTION_WINDOW",
    "SCENARIOS",
    "TUNINGS",
    "DemoOptions",
    "ScenarioNames",
    "TrainerTuning",
    "compress_monitor",
    "confidence_levels",
    "confidence_monitor",
    "demo_config",
    "demo_monitors",
    "monitors_note",
    "tuning_for",
]

MODEL = "review-classifier"
DATASET = "reviews"
CONFIDENCE_MONITOR = "review-classifier confidence"
DRIFT_MONITOR = "review-classifier confidence drift"


@dataclass(frozen=True)
class ScenarioNames:
    """The model and dataset a scenario's project holds, and its monitors' names (the
    template's, named after the model)."""

    model: str
    dataset: str

    @property
    def confidence_monitor(self) -> str:
        return f"{self.model} confidence"

    @property
    def drift_monitor(self) -> str:
        return f"{self.model} confidence drift"

    @property
    def feature_monitor(self) -> str:
        """The tabular scenario's one monitor over every feature (``metric: feature.*``)."""
        return f"{self.model} feature drift"


SCENARIOS: dict[str, ScenarioNames] = {
    "text": ScenarioNames(MODEL, DATASET),
    "tabular": ScenarioNames(TABULAR_MODEL, TABULAR_DATASET),
}
"""``driftloop demo --scenario``: the bundled reviews (the default) or real tabular records."""


PRODUCTION_WINDOW = 300.0
"""The window of the template's confidence monitor (5 minutes): ``--speed`` compresses it."""


def demo_monitors(speed: float) -> list[dict[str, Any]]:
    """The monitors ``driftloop init`` writes, with two changes only: time compressed by
    ``speed`` (5-minute windows last ``300 / speed`` seconds, and the predictions a window must
    hold shrink with it) and the notifications routed to the demo's local Slack and GitHub
    receivers as well as the log."""
    document = yaml.safe_load(default_config_text())
    return [compress_monitor(monitor, speed) for monitor in document["monitors"]]


def compress_monitor(monitor: dict[str, Any], speed: float) -> dict[str, Any]:
    """``monitor`` with its window compressed by ``speed`` and its notifications routed to the
    demo's receivers too (see :func:`demo_monitors`); changed in place and returned."""
    default_window = MonitorConfig.model_fields["window"].default
    window = parse_duration(monitor.get("window", default_window))
    monitor["window"] = f"{window / speed:g}s"
    if "min_count" in monitor:  # a compressed window holds fewer predictions
        monitor["min_count"] = max(1, math.ceil(monitor["min_count"] / speed))
    monitor["message"] = (
        monitor["message"]
        .replace(
            "{{#is_alert}}@log @retrain",
            "{{#is_alert}}@log @slack-demo @github-dispatch @retrain",
        )
        .replace("{{#is_warning}}@log", "{{#is_warning}}@log @slack-demo")
        .replace("{{#is_recovery}}@log", "{{#is_recovery}}@log @slack-demo")
    )
    return monitor


def monitors_note(
    config: Config, reference_confidence: float | None, name: str = CONFIDENCE_MONITOR
) -> str:
    """What the confidence monitor's levels are for v1, and where they come from."""
    confidence = confidence_monitor(config, name)
    warning, critical = confidence_levels(config, reference_confidence, name)
    shown = format_value(reference_confidence)
    assert confidence.below is not None
    return (
        f"monitors: the ones 'driftloop init' writes, windows compressed; the confidence "
        f"monitor warns below {confidence.below.warning} and alerts below "
        f"{confidence.below.critical} (avg over the window); v1's calibrated confidence on its "
        f"own validation split (its reference) is {shown}, so for v1: warn below "
        f"{format_value(warning)}, alert below {format_value(critical)}"
    )


def confidence_monitor(config: Config, name: str = CONFIDENCE_MONITOR) -> MonitorConfig:
    return next(m for m in config.monitors if m.name == name)


def confidence_levels(
    config: Config, reference: float | None, name: str = CONFIDENCE_MONITOR
) -> tuple[float | None, float | None]:
    """(warning, critical) of the confidence monitor for a version with ``reference``."""
    resolved = resolve_thresholds(confidence_monitor(config, name), reference)
    return resolved.warning, resolved.critical


@dataclass
class DemoOptions:
    trainer: str = "sklearn"
    speed: float = 15.0
    out: Path = Path("demo-out")
    open_browser: bool = True
    clients: int = 4
    timeout: float = 480.0
    project_dir: Path | None = None
    drifting: tuple[str, ...] = DRIFTING_SUBTOPICS
    """The subtopics v1 never sees, to which the traffic shifts."""
    scenario: str = "text"
    """A name in :data:`SCENARIOS`."""

    @property
    def names(self) -> ScenarioNames:
        try:
            return SCENARIOS[self.scenario]
        except KeyError:
            raise ConfigError(
                f"--scenario must be one of {', '.join(SCENARIOS)}, got {self.scenario!r}"
            ) from None

    @property
    def window(self) -> float:
        """The monitor window: 5 minutes of production time, compressed by ``speed``."""
        return PRODUCTION_WINDOW / self.speed


def demo_config(options: DemoOptions, receiver: NotificationReceiver, port: int) -> dict[str, Any]:
    """The demo project's driftloop.yaml, as data (written to the project for inspection):
    ``driftloop init``'s monitors, retrain data policy and verification, with time compressed
    by ``--speed``."""
    tuning = tuning_for(options.trainer)
    model: dict[str, Any] = {"trainer": options.trainer, "data": DATASET}
    if tuning.params:
        model["params"] = dict(tuning.params)
    document: dict[str, Any] = {
        "store": "sqlite:///.driftloop/driftloop.db",
        "storage": "file://.driftloop/storage",
        "transport": "local://",
        "public_url": f"http://127.0.0.1:{port}",
        "serving": {"host": "127.0.0.1", "port": port, "registry_poll_interval": 0.5},
        "insights": {"flush_interval": 0.1},
        "models": {MODEL: model},
        "monitors": demo_monitors(options.speed),
        "notifiers": {
            "slack-demo": {"type": "slack", "webhook_url": receiver.slack_webhook_url},
            "github-dispatch": {
                "type": "webhook",
                "url": receiver.url + "/repos/acme/review-training/actions/workflows/"
                "driftloop-train.yml/dispatches",
                "headers": {
                    "Authorization": "token ${DEMO_GITHUB_TOKEN:-demo-token}",
                    "Accept": "application/vnd.github+json",
                },
                "payload": {
                    "ref": "master",
                    "inputs": {"incident_id": "{{incident_id}}", "model": "{{model}}"},
                },
            },
        },
        "pipeline": {
            "cooldown": f"{600 / options.speed:g}s",
            "retry_backoff": f"{600 / options.speed:g}s",
            "verify_deadline": f"{600 / options.speed:g}s",
            "verify_interval": 0.5,
        },
    }
    if options.names.model == TABULAR_MODEL:
        from driftloop.demo.tabular.project import tabular_config

        return tabular_config(document, options.speed)
    return document
