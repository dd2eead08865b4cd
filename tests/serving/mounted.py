"""Routers under test mounted in the real serving app (``create_app``), so a router test sees what
production sends: the error boundary's one body shape, the middlewares, the API key check."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI

from driftloop.config import Config
from driftloop.database import Database
from driftloop.serving import ApiKeyStore, InMemoryModelSource, Scope, create_app
from driftloop.serving.auth import require_scope
from driftloop.serving.feedback import FeedbackStore


def admin_api(*routers: APIRouter) -> APIRouter:
    """``routers`` under ``/v1`` behind an admin key, as ``DriftloopSystem.create_app`` mounts the
    monitors and jobs APIs."""
    api = APIRouter(prefix="/v1", dependencies=[Depends(require_scope(Scope.ADMIN))])
    for router in routers:
        api.include_router(router)
    return api


def mounted_app(
    database: Database,
    *routers: APIRouter,
    config: Config | None = None,
    api_keys: ApiKeyStore | None = None,
) -> FastAPI:
    """The serving app over ``database`` with ``routers`` mounted and no model served."""
    return create_app(
        config if config is not None else Config(),
        model_source=InMemoryModelSource(),
        api_keys=api_keys if api_keys is not None else ApiKeyStore(database),
        feedback=FeedbackStore(database),
        models=[],
        extra_routers=routers,
        poll=False,
    )
