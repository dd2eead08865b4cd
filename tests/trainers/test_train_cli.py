"""``driftloop train`` and the out-of-the-box flow: init, train, models show."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from driftloop.cli import app
from driftloop.config import load_config
from driftloop.objectstore import DatasetStore, bundled_reviews_path
from driftloop.project import init_project

runner = CliRunner()


def flat(output: str) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(output.split())


def small_project(tmp_path: Path) -> Path:
    config_path = tmp_path / "driftloop.yaml"
    config_path.write_text(
        "models:\n"
        "  tiny: {trainer: sklearn, data: small, params: {c_grid: [4.0]}}\n"
        "  broken: {trainer: nonexistent, data: small}\n"
    )
    reviews = pd.read_csv(bundled_reviews_path(), dtype=str, keep_default_na=False)
    sample = reviews.groupby("label", group_keys=False).sample(15, random_state=0)
    DatasetStore.from_config(load_config(config_path)).push(sample, "small")
    return config_path


def test_train_prints_a_summary_table(tmp_path: Path) -> None:
    config = small_project(tmp_path)
    result = runner.invoke(app, ["train", "tiny", "-c", str(config)])
    assert result.exit_code == 0, result.output
    for row in (
        "accuracy",
        "macro-F1",
        "ECE before calibration",
        "ECE after calibration",
        "hash",
        "version",
        "data snapshot",
    ):
        assert row in result.stdout
    as_json = runner.invoke(
        app, ["train", "tiny", "-c", str(config), "--json", "--trigger", "ci:5"]
    )
    assert as_json.exit_code == 0, as_json.output
    version = json.loads(as_json.stdout)
    assert version["version"] == 2
    assert version["trigger"] == "ci:5"
    assert version["parent_version"] == 1
    assert version["seconds"] > 0
    assert set(version["evaluation"]) >= {
        "accuracy",
        "macro_f1",
        "ece",
        "ece_before_calibration",
        "per_class_f1",
    }


def test_train_errors_are_one_line(tmp_path: Path) -> None:
    config = small_project(tmp_path)
    result = runner.invoke(app, ["train", "broken", "-c", str(config)])
    assert result.exit_code == 1
    assert "unknown trainer name 'nonexistent'; known: command, github_dispatch, notebook" in flat(
        result.output
    )
    missing = runner.invoke(app, ["train", "tiny", "--data", "nope", "-c", str(config)])
    assert missing.exit_code == 1
    assert "no snapshot 'nope'" in flat(missing.output)


@pytest.mark.slow
def test_init_then_train_review_classifier_works_out_of_the_box(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    init_project(project)
    monkeypatch.chdir(project)
    trained = runner.invoke(app, ["train", "review-classifier"])
    assert trained.exit_code == 0, trained.output
    shown = runner.invoke(app, ["models", "show", "review-classifier", "--json"])
    assert shown.exit_code == 0, shown.output
    details = json.loads(shown.stdout)
    assert details["aliases"] == {"production": 1}
    version = details["version"]
    assert len(version["content_hash"]) == 64
    snapshot = DatasetStore.from_config(load_config(project / "driftloop.yaml")).newest("reviews")
    assert version["snapshot_id"] == snapshot.snapshot_id
    assert version["snapshot_hash"] == snapshot.content_hash
    assert snapshot.row_count > 10_000
    assert version["evaluation"]["accuracy"] > 0.75
    assert version["evaluation"]["ece"] < version["evaluation"]["ece_before_calibration"]
