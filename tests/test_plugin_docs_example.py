"""docs/plugins.md's complete example runs: the Teams notifier plug-in, installed as a real
distribution (a ``.dist-info`` declaring its entry point on ``sys.path``), passes
driftloop.testing's notifier suite through the test the page shows."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def python_block(containing: str) -> str:
    blocks: list[str] = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    [block] = [b for b in blocks if containing in b]
    return block


def test_the_teams_example_passes_the_notifier_suite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site-packages"
    dist_info = site / "driftloop_teams-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (site / "driftloop_teams.py").write_text(python_block("class TeamsNotifier"))
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: driftloop-teams\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[driftloop.notifiers]\nteams = driftloop_teams:TeamsNotifier\n"
    )
    monkeypatch.syspath_prepend(str(site))
    # the page's test module, its fixture called by hand instead of by pytest
    source = python_block("def test_the_teams_notifier").replace("@pytest.fixture\n", "")
    namespace: dict[str, Any] = {"__name__": "test_teams_conformance"}
    try:
        exec(compile(source, str(DOCS), "exec"), namespace)  # noqa: S102  (our own docs)
        server = namespace["teams_url"]()
        namespace["test_the_teams_notifier_conforms"](next(server))
        next(server, None)
    finally:
        sys.modules.pop("driftloop_teams", None)
