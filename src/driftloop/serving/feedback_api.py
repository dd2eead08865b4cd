"""``POST /v1/models/{name}/feedback``: true labels for earlier predictions, matched with the
prediction log, stored (a relabel replaces the label) and reported as ``prediction_correct``
(and, for a prediction a shadow scored too, the shadow's ``correct`` gap)."""

from __future__ import annotations

import time

import anyio
from fastapi import APIRouter, Request

from driftloop.metrics.points import SHADOW_CORRECT_GAP
from driftloop.serving.auth import LabelKey
from driftloop.serving.errors import ERROR_RESPONSES
from driftloop.serving.feedback import check_feedback, match_feedback
from driftloop.serving.schemas import (
    FeedbackRequest,
    FeedbackResponse,
    parse_body,
    read_json_body,
    request_body_schema,
)
from driftloop.serving.slots import ServedModel
from driftloop.serving.state import ServingState, pair_tags, report_insight, serving_state


def feedback_router() -> APIRouter:
    """True labels for earlier predictions."""
    router = APIRouter(prefix="/v1/models", responses=ERROR_RESPONSES)

    @router.post(
        "/{name}/feedback",
        response_model=FeedbackResponse,
        tags=["predict"],
        openapi_extra=request_body_schema(FeedbackRequest),
        summary="Send true labels for earlier predictions",
    )
    async def send_feedback(name: str, request: Request, key: LabelKey) -> FeedbackResponse:
        state = serving_state(request)
        served = state.manager.get(name)
        data = await read_json_body(request, state.config.serving.max_body_bytes)
        items = parse_body(FeedbackRequest, data).feedback
        check_feedback(items, _feedback_classes(state, served), state.config.serving)
        known = await state.predictions.find_labelled(name, [i.prediction_id for i in items])
        records = match_feedback(
            items, known, model=name, key_id=key.key_id, received_at=time.time()
        )
        stored = await anyio.to_thread.run_sync(state.feedback.record, records)
        for record in stored.first:  # a relabel corrects the row, not the reported insight
            if record.correct is None:
                continue
            report_insight(
                state,
                {"prediction_correct": 1.0 if record.correct else 0.0},
                {
                    "model": name,
                    "version": str(record.version),
                    "class": str(record.predicted_class),
                    "label": record.label,
                },
            )
            gap = record.shadow_correct_gap
            if gap is not None:
                report_insight(
                    state,
                    {SHADOW_CORRECT_GAP: gap},
                    pair_tags(name, record.shadow_version, record.version),
                )
        return FeedbackResponse(
            accepted=len(items),
            relabelled=stored.relabelled,
            matched=sum(1 for record in records if record.predicted_class is not None),
        )

    return router


def _feedback_classes(state: ServingState, served: ServedModel) -> set[str]:
    """The labels feedback may carry for a model: ``models.<name>.labels`` when configured,
    else the classes of the versions it serves (production, and a canary or shadow)."""
    model_config = state.config.models.get(served.name)
    if model_config is not None and model_config.labels:
        return set(model_config.labels)
    classes = set(served.current().labels)
    for slot in (served.canary, served.shadow):
        if slot is not None:
            classes.update(slot.labels)
    return classes
