"""Fixtures of the reliability suite: a served DriftloopSystem app over a real project."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from driftloop.system import DriftloopSystem
from reliability.project import ReliabilityProject, UvicornThread

HOOK_SECRET = "whsec_" + base64.b64encode(b"reliability-suite-hook-secret!!!").decode()
"""``hooks.secret`` of the served system: the inbound hook checks Standard Webhooks signatures."""
LABEL_RATE_LIMIT = {"rate": 0.2, "burst": 2}
"""``serving.rate_limits.label``: what the hostile-input suite's label key runs into."""


@dataclass
class ServedSystem:
    """The whole loop's app (predict, admin, monitors, jobs, dashboard) on a loopback port."""

    project: ReliabilityProject
    system: DriftloopSystem
    url: str
    server: UvicornThread


@pytest.fixture(scope="module")
def served_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedSystem]:
    """Module-wide: training the project's two versions takes a few seconds."""
    directory: Path = tmp_path_factory.mktemp("project")
    project = ReliabilityProject.create(
        directory,
        second_version=True,
        serving={"rate_limits": {"label": LABEL_RATE_LIMIT}},
        extra={"hooks": {"secret": HOOK_SECRET}},
    )
    system = DriftloopSystem(project.config)
    system.insights.start()
    server = UvicornThread(system.create_app(), serving=project.config.serving)
    try:
        with server.running() as url:
            yield ServedSystem(project, system, url, server)
    finally:
        system.insights.close()
