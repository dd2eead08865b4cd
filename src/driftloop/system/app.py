"""The HTTP app of a whole loop: :func:`build_app` mounts, on the serving app, the admin API
(monitors, jobs), the inbound alert hooks, the notification graphs, the dashboard and candidate
uploads, all reading the stores of one :class:`~driftloop.system.DriftloopSystem`."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from fastapi import APIRouter, Depends, FastAPI

if TYPE_CHECKING:
    from driftloop.system.wiring import DriftloopSystem

logger = logging.getLogger("driftloop")


def build_app(system: DriftloopSystem, *, poll: bool = True) -> FastAPI:
    from driftloop.control_metrics import ControlPlaneCollector
    from driftloop.monitors.api import monitors_router
    from driftloop.notify.graph_routes import graph_router
    from driftloop.notify.inbound import HookVerifier, inbound_router
    from driftloop.notify.signatures import ReceiptStore
    from driftloop.pipeline.api import jobs_router
    from driftloop.pipeline.uploads import CandidateUploads, uploads_router
    from driftloop.serving.app import create_app, require_scope
    from driftloop.serving.keys import Scope

    admin = [Depends(require_scope(Scope.ADMIN))]
    api = APIRouter(prefix="/v1", dependencies=admin)
    api.include_router(monitors_router(system.monitor_engine))
    api.include_router(jobs_router(system.queue, system.enqueue_retrain_manual))
    inbound = inbound_router(
        HookVerifier(system.config.hooks, ReceiptStore(system.database)),
        system.handle_inbound_alert,
    )
    app = create_app(
        system.config,
        model_source=None,
        insights=system.insights,
        api_keys=system.api_keys,
        feedback=system.feedback,
        extra_routers=[
            api,
            inbound,
            graph_router(system.router.graph_store),
            dashboard_router_for(system),
            uploads_router(
                CandidateUploads(system.config, system.registry, system.queue, system.datasets)
            ),
        ],
        poll=poll,
    )
    app.state.serving.metrics.add_collector(
        ControlPlaneCollector(
            system.monitor_engine.status,
            system.monitor_engine.incidents.count_open,
            system.queue.count_by_state,
        )
    )
    return app


def dashboard_router_for(system: DriftloopSystem) -> APIRouter:
    """The dashboard's pages and API, reading the system's stores."""
    from driftloop.dashboard.router import dashboard_router
    from driftloop.dashboard.sessions import SessionStore
    from driftloop.dashboard.sources import StoreDashboardData

    return dashboard_router(
        StoreDashboardData(
            database=system.database,
            metric_store=system.metric_store,
            monitors=list(system.config.monitors),
            registry=system.registry,
            jobs=system.queue,
            models=sorted(system.config.models),
            clock=system.options.clock,
        ),
        api_keys=system.api_keys,
        sessions=SessionStore(
            system.database,
            max_age=system.config.dashboard.session_max_age,
            clock=system.options.clock,
        ),
        session_secret=session_secret(system),
    )


def session_secret(system: DriftloopSystem) -> bytes:
    """The dashboard's cookie secret: from the config or the environment (what replicas
    share), else a file of this installation."""
    from driftloop.dashboard.sessions import SECRET_ENV, SECRET_FILE, resolve_session_secret

    config = system.config
    secret, origin = resolve_session_secret(
        config.dashboard.session_secret, os.environ, config.path(SECRET_FILE)
    )
    if origin == str(config.path(SECRET_FILE)) and system.database.dialect != "sqlite":
        logger.warning(
            "the dashboard session secret is the file %s: replicas that do not "
            "share it reject each other's sessions; set "
            "dashboard.session_secret or %s",
            origin,
            SECRET_ENV,
        )
    return secret
