"""For the browser tests: the dashboard served by the real serving app on a loopback port,
logging in, and a page's console watched for errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import uvicorn
from fastapi import FastAPI

from dashboard.world import DashboardWorld
from driftloop.dashboard import SessionStore, dashboard_router, load_session_secret
from driftloop.serving.app import create_app

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page


class ServerThread:
    """uvicorn on 127.0.0.1 with an OS-chosen port, in a thread."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def dashboard_server(world: DashboardWorld) -> Iterator[str]:
    """The dashboard over ``world``, mounted on the serving app; yields its base URL."""
    router = dashboard_router(
        world.data,
        api_keys=world.api_keys,
        sessions=SessionStore(world.database),
        session_secret=load_session_secret(world.root / ".driftloop" / "dashboard-secret"),
    )
    app = create_app(
        world.config, api_keys=world.api_keys, models=[], extra_routers=[router], poll=False
    )
    with ServerThread(app) as url:
        yield url


def watch_console(page: Page) -> list[str]:
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in {"error", "warning"}:
            problems.append(f"console {message.type}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    return problems


def log_in(page: Page, base_url: str, key: str) -> None:
    page.goto(f"{base_url}/")
    assert page.url.startswith(f"{base_url}/login?next=")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")
