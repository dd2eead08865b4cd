"""Fixtures for the real services that marked tests need (postgres, kafka, s3, browser, prometheus).

Each session fixture uses ``DRIFTLOOP_TEST_<NAME>_URL`` when set (a server you run yourself);
otherwise it starts the server through ``scripts/services/<name>.sh start`` (a no-op when
``scripts/services/all.sh start`` already did) and stops it at the end of the session only if
this session started it. See docs/services.md.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

SERVICE_SCRIPTS = Path(__file__).resolve().parent.parent / "scripts" / "services"

CHROMIUM = os.environ.get("DRIFTLOOP_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def service_script(name: str, command: str, *args: str, check: bool = True) -> str:
    """Run ``scripts/services/<name>.sh COMMAND ARGS`` and return its stdout (the URL)."""
    result = subprocess.run(
        [str(SERVICE_SCRIPTS / f"{name}.sh"), command, *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"scripts/services/{name}.sh {command} exited {result.returncode}:\n{result.stderr}",
            pytrace=False,
        )
    return result.stdout.strip()


@dataclass
class ManagedService:
    """One service script's server for this session; stops it at the end if we started it."""

    name: str
    started_here: bool = False
    url: str = ""

    def start(self, *args: str) -> str:
        running = service_script(self.name, "status", check=False).startswith("running")
        self.url = service_script(self.name, "start", *args)
        self.started_here = self.started_here or not running
        return self.url

    def stop(self) -> None:
        if self.started_here:
            service_script(self.name, "stop")


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


@dataclass(frozen=True)
class S3Endpoint:
    """An S3-compatible server and the credentials it accepts."""

    url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def make_bucket(self, prefix: str = "test") -> str:
        """Create a new, uniquely named bucket and return its name."""
        # botocore, not s3fs.mkdir: S3Proxy answers GetBucketLocation for any bucket name, so
        # s3fs believes a missing bucket exists and refuses to create it.
        import botocore.session

        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        client = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()
        return name


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


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    """The session's one Playwright (sync API: a second one cannot run beside it)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        service_script("chromium", "install")
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="session")
def chromium_browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """Headless Debian Chromium driven by Playwright (never a downloaded browser build)."""
    browser = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@dataclass
class PrometheusService:
    """Prometheus and Alertmanager, (re)started with the configuration files a test writes."""

    prometheus: ManagedService = field(default_factory=lambda: ManagedService("prometheus"))
    alertmanager: ManagedService = field(default_factory=lambda: ManagedService("alertmanager"))

    def start_prometheus(self, config: Path | None = None) -> str:
        """Prometheus's base URL, running with ``config`` (restarted if it ran another one)."""
        return self.prometheus.start(*([str(config)] if config else []))

    def start_alertmanager(self, config: Path | None = None) -> str:
        """Alertmanager's base URL, running with ``config`` (restarted if it ran another one)."""
        return self.alertmanager.start(*([str(config)] if config else []))

    def stop(self) -> None:
        self.prometheus.stop()
        self.alertmanager.stop()


@pytest.fixture(scope="session")
def prometheus_service() -> Iterator[PrometheusService]:
    """Starts Prometheus/Alertmanager on demand with a test's config; stops them at the end."""
    service = PrometheusService()
    try:
        yield service
    finally:
        service.stop()

