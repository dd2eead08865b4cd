"""What is served, and the admin's hot swaps: ``GET /v1/models``, ``GET /v1/models/{name}``
(scope ``predict``) and ``POST /v1/models/{name}/deploy``, ``/rollback``, ``/reload`` (scope
``admin``; each answers the model's status after the swap). A deploy or rollback of a model
served elsewhere calls its deploy hook before ``production`` moves."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import APIRouter, Request

from driftloop.errors import ConflictError
from driftloop.registry.deploy_hook import DeployAction, deploy_hook, tell_deploy_hook
from driftloop.serving.auth import AdminKey, PredictKey
from driftloop.serving.errors import ERROR_RESPONSES
from driftloop.serving.keys import ApiKeyInfo
from driftloop.serving.schemas import (
    DeployRequest,
    ModelListResponse,
    ModelStatusResponse,
    parse_body,
    read_json_body,
    request_body_schema,
)
from driftloop.serving.slots import ServedModel
from driftloop.serving.sources import RegistryModelSource
from driftloop.serving.state import ServingState, serving_state

logger = logging.getLogger(__name__)


def model_status_router() -> APIRouter:
    """What is served, and the admin's hot swaps."""
    router = APIRouter(prefix="/v1/models", responses=ERROR_RESPONSES)

    @router.get(
        "", response_model=ModelListResponse, tags=["models"], summary="Describe every served model"
    )
    async def list_models(request: Request, key: PredictKey) -> ModelListResponse:
        manager = serving_state(request).manager
        return ModelListResponse(
            models=[
                ModelStatusResponse(**served.status().to_dict())
                for served in manager.models.values()
            ]
        )

    @router.get(
        "/{name}",
        response_model=ModelStatusResponse,
        tags=["models"],
        summary="Describe one served model",
    )
    async def describe_model(name: str, request: Request, key: PredictKey) -> ModelStatusResponse:
        return _status(serving_state(request).manager.get(name))

    _add_hot_swaps(router)
    return router


def _add_hot_swaps(router: APIRouter) -> None:
    """The admin's routes: deploy a version, roll back, reload."""

    @router.post(
        "/{name}/deploy",
        response_model=ModelStatusResponse,
        tags=["admin"],
        openapi_extra=request_body_schema(DeployRequest),
        summary="Point production at a version and serve it (hot swap)",
    )
    async def deploy(name: str, request: Request, key: AdminKey) -> ModelStatusResponse:
        state = serving_state(request)
        served = state.manager.get(name)
        data = await read_json_body(request, state.config.serving.max_body_bytes)
        version = parse_body(DeployRequest, data).version
        actor = _actor(key)
        hook = _deploy_hook_call(state, name, "deploy", actor, version)
        await state.manager.deploy(name, version, actor=actor, before_move=hook)
        return _status(served)

    @router.post(
        "/{name}/rollback",
        response_model=ModelStatusResponse,
        tags=["admin"],
        summary="Move production back to its previous version",
    )
    async def rollback(name: str, request: Request, key: AdminKey) -> ModelStatusResponse:
        state = serving_state(request)
        served = state.manager.get(name)
        actor = _actor(key)
        hook = _deploy_hook_call(state, name, "rollback", actor)
        await state.manager.rollback(name, actor=actor, before_move=hook)
        return _status(served)

    @router.post(
        "/{name}/reload",
        response_model=ModelStatusResponse,
        tags=["admin"],
        summary="Load the production version again from the registry",
    )
    async def reload(name: str, request: Request, key: AdminKey) -> ModelStatusResponse:
        state = serving_state(request)
        served = state.manager.get(name)
        await state.manager.sync(name, force=True)
        return _status(served)


def _deploy_hook_call(
    state: ServingState, name: str, action: DeployAction, actor: str, version: int | None = None
) -> Callable[[], object] | None:
    """For a model served elsewhere: the call of its deploy hook that must succeed before
    ``production`` moves (``version`` None: the version a rollback goes back to)."""
    if deploy_hook(state.config, name) is None:
        return None
    source = state.manager.source
    if not isinstance(source, RegistryModelSource):
        raise ConflictError(f"model {name!r} has a deploy hook, which needs the model registry")
    registry = source.registry

    def call() -> object:
        target = registry.rollback_target(name) if version is None else version
        answer = tell_deploy_hook(state.config, registry, name, action, target, actor=actor)
        logger.info("%s of %s v%d by %s: %s", action, name, target, actor, answer)
        return answer

    return call


def _status(served: ServedModel) -> ModelStatusResponse:
    return ModelStatusResponse(**served.status().to_dict())


def _actor(key: ApiKeyInfo) -> str:
    return f"api-key:{key.key_id}:{key.name}"
