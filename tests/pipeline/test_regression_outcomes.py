"""#18 part 5: a regression model's retrain outcome speaks in its own numbers. The gate's MAE,
RMSE and R² are variables of the monitor message (``{{candidate_rmse}}`` ...) and, by the same
names, of webhook payloads; the sentence of a rejection without a section of its own names RMSE
and MAE instead of macro-F1."""

from __future__ import annotations

from driftloop.config import GateConfig
from driftloop.messages import MessageTemplate
from driftloop.monitors.events import Event, MonitorState
from driftloop.monitors.outcomes import OUTCOME_VARIABLES, RetrainOutcome
from driftloop.notify.base import Notification
from driftloop.notify.variables import VARIABLES, notification_variables, render_payload
from driftloop.pipeline.gate import decide
from driftloop.predictors import RegressionEvaluation

CANDIDATE = RegressionEvaluation(mae=14.2, rmse=17.344, r2=0.196, n=60)
PRODUCTION = RegressionEvaluation(mae=0.803, rmse=1.012, r2=0.997, n=60)


def rejection() -> RetrainOutcome:
    decision = decide(
        CANDIDATE,
        PRODUCTION,
        GateConfig(primary_metric="rmse"),
        holdout_rows=60,
        fresh_holdout=True,
    )
    assert not decision.accepted
    return RetrainOutcome(
        outcome="rejected",
        job_id="3f2a9c1e-0000",
        model="spend",
        incident_id="i1",
        job_url="http://driftloop/v1/jobs/3f2a9c1e-0000",
        candidate_version=2,
        previous_version=1,
        gate=decision.to_dict(),
    )


def test_a_regression_rejection_has_rmse_mae_and_r2_variables_and_sentence() -> None:
    outcome = rejection()
    values = outcome.variables()
    assert set(values) == set(OUTCOME_VARIABLES)
    assert (values["candidate_rmse"], values["production_rmse"]) == ("17.344", "1.012")
    assert (values["candidate_mae"], values["production_mae"]) == ("14.200", "0.803")
    assert (values["candidate_r2"], values["production_r2"]) == ("0.196", "0.997")
    assert values["candidate_macro_f1"] == ""  # a classifier's number: none here
    template = MessageTemplate(
        "{{#is_rejected}}Rejected: RMSE {{candidate_rmse}} vs {{production_rmse}}, "
        "MAE {{candidate_mae}} vs {{production_mae}}{{/is_rejected}}"
    )
    rendered = template.render(values, {"is_rejected": True}).text
    assert rendered == "Rejected: RMSE 17.344 vs 1.012, MAE 14.200 vs 0.803"
    assert outcome.sentence().startswith(
        "Retrain of spend: candidate rejected by the gate (RMSE 17.344 vs production 1.012, "
        "MAE 14.200 vs production 0.803 on 60 held-out rows)."
    )


def test_webhook_payloads_get_the_gate_numbers_by_the_same_names() -> None:
    outcome = rejection()
    names = [f"{side}_{m}" for m in ("mae", "rmse", "r2") for side in ("candidate", "production")]
    assert set(names) <= set(VARIABLES) & set(OUTCOME_VARIABLES)
    event = Event(
        event_id="e1",
        monitor="spend error",
        group={"model": "spend"},
        previous=MonitorState.ALERT,
        state=MonitorState.ALERT,
        value=None,
        threshold=None,
        timestamp=1_767_225_600.0,
        incident_id="i1",
        message=outcome.sentence(),
        details=outcome.details(),
    )
    variables = notification_variables(Notification.from_event(event, dashboard_url="http://d"))
    payload = render_payload({name: f"{{{{{name}}}}}" for name in names}, variables)
    assert payload == {
        "candidate_mae": 14.2,
        "production_mae": 0.803,
        "candidate_rmse": 17.344,
        "production_rmse": 1.012,
        "candidate_r2": 0.196,
        "production_r2": 0.997,
    }
    assert variables["candidate_macro_f1"] is None
