"""The tabular scenario's project: its ``driftloop.yaml`` (the text demo's, with the segment
model, its retrain data policy and the feature drift monitors) and the user's model code,
installed into the project as a plug-in package."""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from driftloop.demo.config import SCENARIOS, compress_monitor
from driftloop.demo.tabular.scenario import (
    LABEL_COLUMN,
    RECORD_COLUMN,
    TABULAR_DATASET,
    TABULAR_MODEL,
)

EXAMPLE_DIR = Path(__file__).with_name("example")
PLUGIN_PACKAGE = "segment_model"
PLUGIN_TRAINER = "segment"
"""The trainer's entry-point name in ``driftloop.trainers`` (``models.<name>.trainer``)."""
TEXT_ONLY_METRICS = frozenset({"embedding_typicality"})
"""Template monitors of a metric that only text models report (dropped here)."""
FEATURE_MONITOR = SCENARIOS["tabular"].feature_monitor
MODEL_LEVEL_FALSE_ALARM_RATE = 1.0e-9
"""The template's per-prediction budget of one drift monitor, held for the model as a whole
(``feature.*`` splits it evenly over the features: docs/drift.md)."""
FEATURE_WINDOW = 500


def feature_monitor() -> dict[str, Any]:
    """One monitor over every feature: a KS window test per feature against the serving
    version's reference profile."""
    return {
        "name": FEATURE_MONITOR,
        "type": "drift",
        "metric": "feature.*",
        "filter": {"model": TABULAR_MODEL},
        "group_by": ["model", "version"],
        "detector": {
            "algorithm": "ks",
            "window": FEATURE_WINDOW,
            "false_alarm_rate": MODEL_LEVEL_FALSE_ALARM_RATE,
        },
        "message": "Features of {{model}} v{{version}} drifted from its validation reference: "
        "{{drifted_features}}.\n{{#is_alert}}@log @retrain{{/is_alert}}\n",
    }


def tabular_config(document: dict[str, Any], speed: float) -> dict[str, Any]:
    """The text demo's project ``document`` turned into the tabular one: the segment model
    (the user's trainer, the newest snapshot on retrain) and the template's monitors (named
    after it, the text-only one left out) plus the feature drift monitors."""
    monitors = [
        {**monitor, "name": monitor["name"].replace("review-classifier", TABULAR_MODEL)}
        for monitor in document["monitors"]
        if monitor.get("metric") not in TEXT_ONLY_METRICS
    ]
    monitors.append(compress_monitor(feature_monitor(), speed))
    document["models"] = {
        TABULAR_MODEL: {
            "trainer": PLUGIN_TRAINER,
            "data": TABULAR_DATASET,
            "text_column": RECORD_COLUMN,
            "label_column": LABEL_COLUMN,
            "retrain_data": "newest",
        }
    }
    document["monitors"] = monitors
    return document


def install_example(project: Path) -> Path:
    """Install the user's model code (``example/``) into ``project/plugins`` as the package
    :data:`PLUGIN_PACKAGE`, with the metadata that declares its trainer in the entry-point
    group ``driftloop.trainers`` (what ``pip install`` of such a package writes). Returns the
    folder to put on ``sys.path`` (or ``PYTHONPATH``)."""
    plugins = project / "plugins"
    package = plugins / PLUGIN_PACKAGE
    package.mkdir(parents=True, exist_ok=True)
    for source in EXAMPLE_DIR.glob("*.py"):
        shutil.copy(source, package / source.name)
    metadata = plugins / f"{PLUGIN_PACKAGE}-1.0.dist-info"
    metadata.mkdir(exist_ok=True)
    (metadata / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {PLUGIN_PACKAGE}\nVersion: 1.0\n"
    )
    (metadata / "entry_points.txt").write_text(
        f"[driftloop.trainers]\n{PLUGIN_TRAINER} = {PLUGIN_PACKAGE}.trainer:SegmentTrainer\n"
    )
    return plugins


@contextmanager
def on_path(folder: Path) -> Iterator[None]:
    """``folder`` on ``sys.path`` while the block runs."""
    entry = str(folder)
    sys.path.insert(0, entry)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        if entry in sys.path:
            sys.path.remove(entry)
