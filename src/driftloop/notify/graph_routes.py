"""``GET /v1/graphs/<id>.png``: the route that serves the stored notification graphs (apart from
:mod:`driftloop.notify.graphs`, so that sending notifications does not import FastAPI)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from driftloop.notify.graphs import GraphStore


def graph_router(store: GraphStore) -> APIRouter:
    """``GET /v1/graphs/{graph_id}.png``: the graphs linked from Slack messages (public, like
    the image links themselves; ids are random 128-bit values)."""
    router = APIRouter()

    @router.get(
        "/v1/graphs/{graph_id}.png",
        tags=["graphs"],
        summary="A notification graph",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    def get_graph(graph_id: str) -> Response:
        png = store.get(graph_id)  # NotFoundError: the app answers 404
        return Response(
            png,
            media_type="image/png",
            headers={"Cache-Control": "public, max-age=86400, immutable"},
        )

    return router
