"""The jobs API: list, show and cancel retrain jobs, or trigger one by hand.

The routes raise driftloop's errors; the app's error boundary (:mod:`driftloop.serving.errors`)
answers them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from driftloop.pipeline.queue import JobQueue
from driftloop.timestamps import iso_utc


class RetrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=2_000)


def job_detail(queue: JobQueue, job_id: str) -> dict[str, Any]:
    job = queue.find(job_id)
    data = job.to_dict()
    data["steps"] = [
        {
            **step.__dict__,
            "started_at": iso_utc(step.started_at),
            "finished_at": iso_utc(step.finished_at),
        }
        for step in queue.steps(job.job_id)
    ]
    return data


def jobs_router(queue: JobQueue, retrain: Callable[[str, str], str]) -> APIRouter:
    router = APIRouter(tags=["jobs"])

    @router.get("/jobs")
    def list_jobs(
        model: str | None = None, limit: int = Query(100, ge=1, le=10_000)
    ) -> list[dict[str, Any]]:
        """Retrain jobs, newest first."""
        return [job.to_dict() for job in queue.list(model=model, limit=limit)]

    @router.get("/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        """One job with its steps and their logs."""
        return job_detail(queue, job_id)

    @router.post("/jobs/{job_id}/cancel")
    def cancel_job(job_id: str) -> dict[str, Any]:
        """Cancel a queued job, or ask a running one to stop at its next step."""
        return queue.request_cancel(queue.find(job_id).job_id).to_dict()

    @router.post("/models/{name}/retrain", status_code=202)
    def retrain_model(name: str, request: RetrainRequest) -> dict[str, str]:
        """Queue a retrain of a model now (skips the cooldown, not the one-job rule)."""
        return {"job_id": retrain(name, request.reason)}

    return router
