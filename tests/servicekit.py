"""Helpers for the real services the marked tests use (imported by conftest.py and tests).

A module of its own, not conftest.py: several test folders have a conftest.py, so
``from conftest import ...`` would find whichever was imported first.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from driftloop.database import Database

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


BOTH_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
"""Parameters of a fixture whose tests run on SQLite and, with the ``postgres`` marker, on a
fresh PostgreSQL database."""


def migrated_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated :class:`Database` on the backend of ``request.param`` (see
    :data:`BOTH_BACKENDS`); use as ``database = pytest.fixture(params=BOTH_BACKENDS)(
    migrated_database)``."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'driftloop.db'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    db = Database(url)
    db.migrate()
    try:
        yield db
    finally:
        db.dispose()


def close_s3_filesystem(filesystem: Any) -> None:
    """Close an s3fs filesystem's aiobotocore session on the filesystem's own event loop (s3fs
    leaves that to garbage collection, which may run in any later test)."""
    from fsspec.asyn import sync

    session = getattr(filesystem, "_s3", None)
    if session is not None and filesystem.loop is not None and filesystem.loop.is_running():
        sync(filesystem.loop, session.__aexit__, None, None, None)
        filesystem._s3 = None


def drop_s3_connections(creator: Any) -> None:
    """Close the connections of an aiobotocore client's aiohttp sessions without their event
    loop (when it cannot run a close any more), so that no session is left unclosed."""
    http_session = getattr(
        getattr(getattr(creator, "_client", None), "_endpoint", None), "http_session", None
    )
    for session in list((getattr(http_session, "_sessions", None) or {}).values()):
        connector = getattr(session, "_connector", None)
        if connector is not None:
            connector._close()
