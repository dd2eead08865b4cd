"""#18 part 5: the gate and retrain for any predictor. A ``command`` trainer writes a custom-code
regression predictor (a record model with its own ``spend.py``); the real pipeline trains it,
loads it through the plug-in path and gates it against production by RMSE, accepting a better
candidate and rejecting a worse one; the rule (metric, margin, direction) and its config."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from byo_models import REGRESSION_PREDICTOR, write_regression_model
from driftloop.config import GateConfig, parse_config
from driftloop.errors import ConfigError
from driftloop.pipeline.gate import decide, seen_keys, split_for_remote
from driftloop.pipeline.queue import Job, JobState
from driftloop.pipeline.uploads import CandidateUploads
from driftloop.predictors import Evaluation, RegressionEvaluation
from pipeline.world import MODEL, PipelineWorld, ScriptedHealthProbe, Snapshots

TRAIN_SCRIPT = '''
"""Fits spend = slope * tenure + intercept ("fit"), or predicts the mean spend ("flat")."""
import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np

data_path, output_dir, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
with open(data_path, newline="") as handle:
    rows = list(csv.DictReader(handle))
tenure = np.array([float(row["tenure_months"]) for row in rows])
spend = np.array([float(row["spend"]) for row in rows])
slope, intercept = np.polyfit(tenure, spend, 1) if mode == "fit" else (0.0, spend.mean())
model = output_dir / "model"
model.mkdir()
shutil.copy(Path(__file__).parent / "spend.py", model / "spend.py")
(model / "coefficients.json").write_text(
    json.dumps({"slope": float(slope), "intercept": float(intercept), "width": 1.0})
)
(model / "driftloop-model.json").write_text(json.dumps({"predictor": "spend.py:SpendPredictor"}))
(output_dir / "metrics.json").write_text(json.dumps({"train_rows": len(rows)}))
'''


def spend_rows(n: int, *, start: int, seed: int) -> pd.DataFrame:
    """Customers with spend = 2 * tenure + 10 + noise; ``promo`` is sometimes blank."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 60, n)
    return pd.DataFrame(
        {
            "customer_id": [f"c{start + i}" for i in range(n)],
            "tenure_months": tenure,
            "promo": rng.choice(["true", "false", ""], n),
            "spend": np.round(2.0 * tenure + 10.0 + rng.normal(0.0, 1.0, n), 3),
        }
    )


def regression_world(tmp_path: Path, *, mode: str, production_slope: float) -> PipelineWorld:
    """Production: a SpendPredictor with ``production_slope`` trained on the known rows; the
    command trainer fits a new one in ``mode`` on the newer snapshot."""
    sources = tmp_path / "training"
    sources.mkdir()
    (sources / "spend.py").write_text(REGRESSION_PREDICTOR)
    (sources / "train_spend.py").write_text(TRAIN_SCRIPT)
    known = spend_rows(150, start=0, seed=1)
    newer = pd.concat([known, spend_rows(150, start=1000, seed=2)], ignore_index=True)
    world = PipelineWorld.create(
        tmp_path,
        model={
            "trainer": "command",
            "command": [
                sys.executable,
                str(sources / "train_spend.py"),
                "{data_path}",
                "{output_dir}",
                mode,
            ],
            "params": {},
            "output": "regression",
            "label_column": "spend",
            "gate": {"primary_metric": "rmse", "min_gain": 0.1},
        },
        snapshots=Snapshots(known, newer),
    )
    snapshot = world.push(known)
    directory = write_regression_model(tmp_path / "production", slope=production_slope)
    version = world.system.registry.register(
        MODEL,
        directory,
        trainer="command",
        snapshot_id=snapshot.snapshot_id,
        snapshot_hash=snapshot.content_hash,
    )
    world.system.registry.set_alias(MODEL, "production", version.version, actor="test")
    world.push(newer)
    return world


def run_retrain(world: PipelineWorld) -> Job:
    job_id = world.system.queue.enqueue(MODEL, reason="test").job.job_id
    claimed = world.system.queue.claim("test-worker")
    assert claimed is not None
    assert claimed.job_id == job_id
    health = ScriptedHealthProbe(
        world.clock, ok_from=world.clock.now + 5, confidence={1: 0.5, 2: 0.5}, pair_rate=4.0
    )
    return world.pipeline(health).run(claimed, "test-worker")


def test_a_command_trainers_custom_regression_model_that_beats_production_by_rmse_is_deployed(
    tmp_path: Path,
) -> None:
    world = regression_world(tmp_path, mode="fit", production_slope=1.5)

    job = run_retrain(world)

    gate = job.result.gate
    assert gate["accepted"] is True, (job.error, gate)
    rmse = next(reason for reason in gate["reasons"] if reason.startswith("RMSE"))
    candidate, production = gate["candidate"]["rmse"], gate["production"]["rmse"]
    assert candidate < 2.0 < production  # the fitted slope vs production's 1.5
    assert f"RMSE {candidate:.3f} vs production {production:.3f}" in rmse
    assert "lower is better" in rmse
    assert rmse.endswith("pass")
    assert any(reason.startswith("for the record: MAE") for reason in gate["reasons"])
    assert JobState.GATED in world.states
    assert job.candidate_version == 2
    version = world.system.registry.get_version(MODEL, 2)
    assert isinstance(version.evaluation, RegressionEvaluation)  # the trainer's held-out
    assert version.evaluation.rmse < 2.0
    assert version.params["reported_metrics"]["train_rows"] == version.params["rows"]["train"]
    served = world.system.registry.load_predictor(version)  # its own code, from the registry
    assert type(served).__name__ == "SpendPredictor"
    assert served.output == "regression"
    assert job.state == JobState.SUCCEEDED, job.error
    assert world.production() == 2


def test_a_custom_regression_model_worse_than_production_by_rmse_is_rejected(
    tmp_path: Path,
) -> None:
    world = regression_world(tmp_path, mode="flat", production_slope=2.0)

    job = run_retrain(world)

    assert job.state == JobState.REJECTED, job.error
    gate = job.result.gate
    assert gate["accepted"] is False
    rmse = next(reason for reason in gate["reasons"] if reason.startswith("RMSE"))
    assert f"vs production {gate['production']['rmse']:.3f}" in rmse
    assert "needs >= +0.100" in rmse
    assert rmse.endswith("fail")
    assert world.production() == 1
    assert world.system.registry.aliases(MODEL) == {"production": 1}


def test_a_remote_regression_candidate_is_held_out_at_random_not_by_target_value(
    tmp_path: Path,
) -> None:
    """``trainer: github_dispatch`` (and any upload): the workflow trains on what
    ``GET /v1/models/{name}/training-data`` gives and the gate holds out the rest. Integer
    targets that each occur twice look like 50 classes to a stratified split, which cannot put
    each in 30 held-out rows; a regression model's rows are split at random instead, the
    same way on both sides."""
    world = regression_world(tmp_path, mode="fit", production_slope=2.0)
    frame = spend_rows(100, start=5000, seed=3)
    frame["spend"] = [i // 2 for i in range(100)]  # 0, 0, 1, 1, ..., 49, 49
    snapshot = world.push(frame)
    uploads = CandidateUploads(
        world.config, world.system.registry, world.system.queue, world.system.datasets
    )

    train, served = uploads.training_rows(MODEL, snapshot.snapshot_id)
    split = split_for_remote(
        world.system.datasets.load(snapshot),
        "text",  # a record model: no text column, rows are known by their features
        "spend",
        seen_keys(spend_rows(150, start=0, seed=1), "text", "spend"),
        fraction=world.config.pipeline.holdout_fraction,
        min_fresh_rows=10,
        seed=world.config.pipeline.seed,
        output="regression",
    )

    assert served.snapshot_id == snapshot.snapshot_id
    assert world.config.pipeline.holdout_fraction == 0.3
    assert (len(train), len(split.holdout)) == (70, 30)
    assert list(split.train["customer_id"]) == list(train["customer_id"])
    assert set(split.holdout["customer_id"]).isdisjoint(train["customer_id"])
    assert split.fresh  # none of these customers were in production's snapshot
    assert split.holdout["spend"].nunique() > 10  # not one row per value: not stratified


# ------------------------------------------------------------------------------ the rule


def regression(mae: float, rmse: float) -> RegressionEvaluation:
    return RegressionEvaluation(mae=mae, rmse=rmse, r2=0.5, n=100)


def classification(macro_f1: float, accuracy: float, ece: float = 0.05) -> Evaluation:
    return Evaluation(accuracy, macro_f1, {}, ece, ece, 0.8, 100)


@pytest.mark.parametrize(
    ("gate", "candidate", "accepted", "reason"),
    [
        ({}, regression(5.0, 6.0), True, "RMSE 6.000 vs production 7.000 (gain +1.000"),
        ({"min_gain": 1.5}, regression(5.0, 6.0), False, "needs >= +1.500"),
        ({}, regression(3.0, 7.5), False, "RMSE 7.500 vs production 7.000 (gain -0.500"),
        ({"primary_metric": "mae"}, regression(3.0, 7.5), True, "MAE 3.000 vs production 4.000"),
        ({"primary_metric": "mae", "min_gain": -0.5}, regression(4.4, 9.0), True, "-0.400"),
    ],
)
def test_a_regression_gate_compares_its_error_where_lower_is_better(
    gate: dict[str, object], candidate: RegressionEvaluation, accepted: bool, reason: str
) -> None:
    decision = decide(
        candidate,
        regression(4.0, 7.0),
        GateConfig.model_validate(gate),
        holdout_rows=100,
        fresh_holdout=True,
    )
    assert decision.accepted is accepted, decision.reasons
    assert any(reason in line for line in decision.reasons), decision.reasons
    assert not any(line.startswith("ECE") for line in decision.reasons)


def test_a_classifier_can_be_gated_on_accuracy_with_its_margin() -> None:
    gate = GateConfig(primary_metric="accuracy", min_gain=0.02)
    better = decide(
        classification(0.70, 0.83),
        classification(0.75, 0.80),
        gate,
        holdout_rows=9,
        fresh_holdout=True,
    )
    assert better.accepted, better.reasons
    assert better.reasons[0].startswith("accuracy 0.830 vs production 0.800 (gain +0.030")
    assert better.reasons[1].startswith("ECE")
    short = decide(
        classification(0.9, 0.81),
        classification(0.7, 0.80),
        gate,
        holdout_rows=9,
        fresh_holdout=True,
    )
    assert not short.accepted


def test_a_gate_metric_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"primary_metric 'macro_f1' cannot gate model 'prices'"):
        parse_config(
            "models:\n  prices:\n    output: regression\n    gate: {primary_metric: macro_f1}\n",
            environ={},
        )
    with pytest.raises(ConfigError, match=r"pipeline.gate.primary_metric 'mae'.*'reviews'"):
        parse_config(
            "models:\n  reviews: {}\npipeline:\n  gate: {primary_metric: mae}\n", environ={}
        )
    with pytest.raises(ConfigError, match="'rmse' cannot gate the model: it is a classification"):
        decide(
            classification(0.8, 0.8),
            None,
            GateConfig(primary_metric="rmse"),
            holdout_rows=9,
            fresh_holdout=True,
        )
