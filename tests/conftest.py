"""Fixtures for the real services that marked tests need (postgres, kafka, s3, browser, prometheus).

Each session fixture uses ``DRIFTLOOP_TEST_<NAME>_URL`` when set (a server you run yourself);
otherwise it starts the server through ``scripts/services/<name>.sh start`` (a no-op when
``scripts/services/all.sh start`` already did) and stops it at the end of the session only if
this session started it. See docs/services.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from servicekit import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ManagedService,
    PrometheusService,
    S3Endpoint,
    close_s3_filesystem,
    drop_s3_connections,
    service_script,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

pytest_plugins = ["heap"]


def _session_service(name: str, env_var: str) -> Iterator[str]:
    external = os.environ.get(env_var)
    if external:
        yield external
        return
    service = ManagedService(name)
    try:
        yield service.start()
    finally:
        service.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgresql+psycopg://postgres@127.0.0.1:PORT/driftloop`` of a running PostgreSQL."""
    yield from _session_service("postgres", "DRIFTLOOP_TEST_POSTGRES_URL")


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """The URL of a new, empty database on the session's PostgreSQL, dropped after the test."""
    import sqlalchemy as sa

    name = f"test_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(
        sa.engine.make_url(postgres_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(postgres_url).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``127.0.0.1:PORT``: the bootstrap servers of a running single-node Apache Kafka."""
    for url in _session_service("kafka", "DRIFTLOOP_TEST_KAFKA_BOOTSTRAP"):
        yield url.removeprefix("kafka://")


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[S3Endpoint]:
    """A running S3-compatible server (S3Proxy); the standard AWS_* variables point at it."""
    access = os.environ.setdefault("AWS_ACCESS_KEY_ID", "driftloop")
    secret = os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "driftloop-secret")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    for url in _session_service("s3", "DRIFTLOOP_TEST_S3_ENDPOINT"):
        yield S3Endpoint(url, access, secret, os.environ["AWS_DEFAULT_REGION"])


@pytest.fixture
def s3_bucket(s3_endpoint: S3Endpoint) -> str:
    """A new, empty bucket on the session's S3 server."""
    return s3_endpoint.make_bucket()


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    """Playwright for one test module. Its sync API keeps an event loop running in the main
    thread while it lives, which breaks every later async test, so it must not outlive the
    module that uses it."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        service_script("chromium", "install")
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def chromium_browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """Headless Debian Chromium driven by Playwright (never a downloaded browser build)."""
    browser = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="session")
def prometheus_service() -> Iterator[PrometheusService]:
    """Starts Prometheus/Alertmanager on demand with a test's config; stops them at the end."""
    service = PrometheusService()
    try:
        yield service
    finally:
        service.stop()


def _close_s3_session_on_its_own_loop(loop: Any, creator: Any) -> None:
    """s3fs's garbage-collection hook, minus its one flaw: when a filesystem is collected in a
    thread that runs another event loop (an async test's), s3fs schedules the close there, with
    futures of its own loop: an error in whichever unrelated test the collection hit. This
    closes the session on the filesystem's loop, as s3fs does everywhere else."""
    from fsspec.asyn import sync

    if loop is not None and loop.is_running():
        # from the loop's own thread or after a timeout: drop the connections below, as s3fs does
        with contextlib.suppress(Exception):
            sync(loop, creator.__aexit__, None, None, None, timeout=5.0)
            return
    drop_s3_connections(creator)


@pytest.fixture(autouse=True, scope="session")
def _s3fs_closes_sessions_on_their_own_loop() -> Iterator[None]:
    try:
        import s3fs
    except ImportError:  # the s3 extra is not installed: nothing to guard
        yield
        return
    original = s3fs.S3FileSystem.close_session
    s3fs.S3FileSystem.close_session = staticmethod(_close_s3_session_on_its_own_loop)
    try:
        yield
    finally:
        s3fs.S3FileSystem.close_session = original


@pytest.fixture(autouse=True)
def _close_s3_sessions() -> Iterator[None]:
    """Close the S3 sessions a test opened, on their own event loop.

    s3fs caches filesystems and closes their aiobotocore session when one is garbage-collected;
    if that happens while a later async test runs its own loop, s3fs schedules the close on that
    loop and the session's futures belong to another: an unraisable error in an unrelated test.
    """
    yield
    s3fs = sys.modules.get("s3fs")
    if s3fs is None:
        return
    for filesystem in list(s3fs.S3FileSystem._cache.values()):
        close_s3_filesystem(filesystem)
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(autouse=True)
def _driftloop_logging_is_reset() -> Iterator[None]:
    """A test that configures driftloop's logging (``up``, ``serve`` through the CLI) leaves
    no handler behind: the next test's command would print its log lines into its output."""
    yield
    logger = logging.getLogger("driftloop")
    for handler in [h for h in logger.handlers if getattr(h, "driftloop_handler", False)]:
        logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
    logger.propagate = True
