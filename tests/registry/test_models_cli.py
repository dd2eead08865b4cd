"""``driftloop models ls|show|history|promote|rollback|register``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from driftloop.cli import app
from driftloop.predictors import Evaluation
from driftloop.trainers.base import TrainedModel

runner = CliRunner()


def flat(output: str) -> str:
    """CLI output with rich's line wrapping undone."""
    return " ".join(output.split())


def invoke(config: Path, *args: str) -> Any:
    result = runner.invoke(app, [*args, "-c", str(config)])
    assert result.exit_code == 0, result.output
    return result


def project(tmp_path: Path) -> Path:
    config = tmp_path / "driftloop.yaml"
    config.write_text("models:\n  review-classifier: {trainer: sklearn, data: reviews}\n")
    return config


def test_register_show_promote_rollback(
    tmp_path: Path, model_dir: Path, trained: TrainedModel
) -> None:
    config = project(tmp_path)
    evaluation = tmp_path / "evaluation.json"
    evaluation.write_text(
        json.dumps(
            {"evaluation": trained.evaluation.to_dict(), "reference": trained.reference.to_dict()}
        )
    )
    first = json.loads(
        invoke(
            config,
            "models",
            "register",
            "review-classifier",
            str(model_dir),
            "--trigger",
            "ci:100",
            "--evaluation",
            str(evaluation),
            "--json",
        ).stdout
    )
    assert first["version"] == 1
    assert first["trigger"] == "ci:100"
    assert first["deployed_at"] is not None  # the first version becomes production
    assert isinstance(trained.evaluation, Evaluation)
    assert first["evaluation"]["macro_f1"] == trained.evaluation.macro_f1
    plain = invoke(config, "models", "register", "review-classifier", str(model_dir))
    assert "registered review-classifier v2" in plain.stdout

    listed = json.loads(invoke(config, "models", "ls", "--json").stdout)
    assert listed == [
        {
            "name": "review-classifier",
            "versions": 2,
            "latest_version": 2,
            "latest_created_at": listed[0]["latest_created_at"],
            "aliases": {"production": 1},
        }
    ]
    shown = json.loads(invoke(config, "models", "show", "review-classifier", "--json").stdout)
    assert shown["version"]["version"] == 1
    assert shown["version"]["content_hash"] == first["content_hash"]
    assert shown["version"]["reference"]["sample_size"] == len(trained.reference.confidences)
    assert [v["aliases"] for v in shown["versions"]] == [["production"], []]

    promoted = json.loads(
        invoke(
            config, "models", "promote", "review-classifier", "2", "--actor", "alice", "--json"
        ).stdout
    )
    assert promoted["aliases"] == {"production": 2}
    invoke(config, "models", "promote", "review-classifier", "1", "--alias", "candidate")
    rolled = json.loads(invoke(config, "models", "rollback", "review-classifier", "--json").stdout)
    assert rolled == {"name": "review-classifier", "alias": "production", "version": 1}

    history = json.loads(invoke(config, "models", "history", "review-classifier", "--json").stdout)
    assert [(h["alias"], h["action"], h["version"]) for h in history] == [
        ("production", "set", 1),
        ("production", "set", 2),
        ("candidate", "set", 1),
        ("production", "rollback", 1),
    ]
    assert history[1]["actor"] == "alice"
    assert history[3]["actor"].startswith("cli")

    for command in (
        ["models", "ls"],
        ["models", "show", "review-classifier"],
        ["models", "show", "review-classifier", "--version", "2"],
        ["models", "history", "review-classifier"],
    ):
        assert "production" in invoke(config, *command).stdout


def test_errors_are_clean(tmp_path: Path, model_dir: Path) -> None:
    config = project(tmp_path)
    missing = runner.invoke(app, ["models", "show", "nope", "-c", str(config)])
    assert missing.exit_code == 1
    assert "no model named 'nope'" in flat(missing.output)
    bad = runner.invoke(
        app, ["models", "register", "review-classifier", str(tmp_path), "-c", str(config)]
    )
    assert bad.exit_code == 1
    assert "is not a model directory: it holds no driftloop-model.json" in flat(bad.output)
    invoke(config, "models", "register", "review-classifier", str(model_dir))
    nothing_earlier = runner.invoke(
        app, ["models", "rollback", "review-classifier", "-c", str(config)]
    )
    assert nothing_earlier.exit_code == 1
    assert "no earlier production version" in flat(nothing_earlier.output)
