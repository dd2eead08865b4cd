"""``driftloop.Client`` against the whole loop's app: monitors, deploy and rollback through the
real registry, and a predict key refused where it has no scope."""

from __future__ import annotations

import pytest

from driftloop.client import Client
from driftloop.errors import ForbiddenError
from reliability.conftest import ServedSystem

MODEL = "review-classifier"


def test_monitors_deploy_and_rollback_through_the_registry(served_system: ServedSystem) -> None:
    project = served_system.project
    configured = sorted(monitor.name for monitor in project.config.monitors)
    with Client(served_system.url, project.admin_key) as admin:
        monitors = admin.monitors()
        assert sorted(m.name for m in monitors) == configured
        assert all(m.metric and m.type for m in monitors)
        first, second = project.versions
        assert admin.deploy(MODEL, second.version).version == second.version
        assert project.registry.aliases(MODEL)["production"] == second.version
        assert admin.rollback(MODEL).version == first.version
        assert project.registry.aliases(MODEL)["production"] == first.version
    with Client(served_system.url, project.predict_key) as client, \
            pytest.raises(ForbiddenError) as refused:
        client.monitors()
    assert refused.value.status_code == 403
