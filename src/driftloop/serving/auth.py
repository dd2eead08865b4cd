"""API keys on the serving routes: :func:`require_scope`, the dependency that admits a request
whose key has a scope (and is within its rate limit), and the OpenAPI document of the two headers
it reads."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from driftloop.errors import AuthError
from driftloop.serving.keys import ApiKeyInfo, ApiKeyStore, Scope


class ApiKeyAuth(HTTPBearer):
    """The dependency that admits a request: its verified API key, which must have ``scope``.

    The key comes as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. It is one
    dependency reading both headers itself (rather than one sub-dependency per header), since it
    runs on every request; OpenAPI shows it as the ``HTTPBearer`` scheme."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(
            auto_error=False,
            scheme_name="HTTPBearer",
            description="Authorization: Bearer <API key>",
        )
        self.scope = scope

    async def __call__(self, request: Request) -> ApiKeyInfo:  # type: ignore[override]
        headers = request.headers
        authorization = headers.get("authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        key = credentials.strip() if scheme.lower() == "bearer" else headers.get("x-api-key")
        if not key:
            raise AuthError(
                "missing API key: send 'Authorization: Bearer <key>' or "
                "'X-API-Key: <key>' (create one with 'driftloop keys create')"
            )
        keys: ApiKeyStore = request.app.state.serving.api_keys
        info = keys.cached(key)
        if info is None:
            info = await anyio.to_thread.run_sync(keys.authenticate, key)
        info.require(self.scope)
        request.app.state.rate_limiter.check(info)
        return info


API_KEY_HEADER_SCHEME = {
    "type": "apiKey",
    "in": "header",
    "name": "X-API-Key",
    "description": "the API key, as an alternative header",
}


def document_api_key_header(schema: dict[str, Any]) -> dict[str, Any]:
    """Add ``X-API-Key`` to the OpenAPI document as the alternative to every ``HTTPBearer``
    requirement (:class:`ApiKeyAuth` reads both headers, but declares one scheme)."""
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    if "HTTPBearer" not in schemes:
        return schema
    schemes["APIKeyHeader"] = API_KEY_HEADER_SCHEME
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            security = operation.get("security") if isinstance(operation, dict) else None
            if security and {"HTTPBearer": []} in security and {"APIKeyHeader": []} not in security:
                security.append({"APIKeyHeader": []})
    return schema


def require_scope(scope: Scope) -> ApiKeyAuth:
    """A dependency: the caller's verified key, which must have ``scope``."""
    return ApiKeyAuth(scope)


PredictKey = Annotated[ApiKeyInfo, Depends(require_scope(Scope.PREDICT))]
LabelKey = Annotated[ApiKeyInfo, Depends(require_scope(Scope.LABEL))]
AdminKey = Annotated[ApiKeyInfo, Depends(require_scope(Scope.ADMIN))]
RegisterKey = Annotated[ApiKeyInfo, Depends(require_scope(Scope.REGISTER))]


__all__ = [
    "API_KEY_HEADER_SCHEME",
    "AdminKey",
    "ApiKeyAuth",
    "LabelKey",
    "PredictKey",
    "RegisterKey",
    "document_api_key_header",
    "require_scope",
]
