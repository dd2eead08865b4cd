"""Packaging (#21 part 6): the lean install (the reporting SDK and the command line without the
server extra), the torch range with exact versions in constraints.txt, the LICENSE.

A lean install is simulated in a subprocess that refuses to import the server extra's modules;
``scripts/smoke-wheel`` (run by ``make test``) checks a real wheel in a fresh venv."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from driftloop.cli.app import SERVER_MODULES

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("scikit-learn", "scipy", "pandas", "matplotlib")

LEAN = f"""
import importlib.abc, sys
BLOCKED = {sorted(SERVER_MODULES | {"torch"})!r}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Refuse())
"""


def run_lean(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LEAN + code], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def _requirement_names(requirements: list[str]) -> set[str]:
    return {
        re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower() for requirement in requirements
    }


def test_the_lean_install_leaves_the_heavy_libraries_to_the_server_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _requirement_names(project["dependencies"])
    assert not core & set(HEAVY)
    assert set(HEAVY) <= _requirement_names(project["optional-dependencies"]["server"])
    assert "driftloop[server" in " ".join(project["optional-dependencies"]["all"])


def test_torch_is_a_range_and_constraints_pin_the_tested_build() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    [torch] = [r for r in extras["transformers"] if r.startswith("torch")]
    assert "==" not in torch
    assert ">=" in torch
    pins = dict(
        re.findall(r"^([a-z0-9_.-]+)==(\S+)", (ROOT / "constraints.txt").read_text(), re.MULTILINE)
    )
    assert "torch" in pins
    assert "scikit-learn" in pins
    makefile = (ROOT / "Makefile").read_text()
    assert "CONSTRAINTS := -c constraints.txt" in makefile
    assert makefile.count("$(CONSTRAINTS) -e") == 2  # make demo and make test both use it
    assert "scripts/smoke-wheel" in makefile


def test_license_is_the_apache_2_text() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == (
        "Apache-2.0"
    )


def test_report_insights_and_the_client_work_without_the_server_extra(tmp_path: Path) -> None:
    (tmp_path / "driftloop.yaml").write_text("models: {}\n")
    result = run_lean(
        """
import time
from driftloop import SqlMetricStore, configure_insights, load_config, report_insights
from driftloop.insights import shutdown_insights
from driftloop.database import open_database
config = load_config()
configure_insights(config)
start = time.time() - 1
report_insights({"model_confidence": 0.93}, tags={"model": "m"})
shutdown_insights()
store = SqlMetricStore(open_database(config.store, base_dir=config.base_dir),
                       raw_retention=86400, rollup_retention=86400)
[result] = store.query("model_confidence", "count", start, time.time() + 1)
print(int(result.value))
from driftloop import Client
Client("http://127.0.0.1:9", api_key="k").close()
""",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_a_server_command_without_the_extra_names_it(tmp_path: Path) -> None:
    (tmp_path / "driftloop.yaml").write_text("models: {}\n")
    code = (
        "import sys; sys.argv = ['driftloop'] + sys.argv[1:]\n"
        "from driftloop.cli import main\nmain()\n"
    )
    # data ls reads object storage (fsspec, the server extra); models ls reads the store alone
    # (the registry opens its storage's filesystem when it first reads or writes an artifact)
    working = (["--help"], ["version"], ["models", "ls", "--json"])
    for args in (["serve"], ["data", "ls", "--json"], *working):
        result = subprocess.run(
            [sys.executable, "-c", LEAN + code, *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )
        if args in working:
            assert result.returncode == 0, result.stderr
            continue
        assert result.returncode == 1, result
        assert "pip install 'driftloop[server]'" in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        if "--json" in args:
            assert json.loads(result.stdout)["error"]["type"] == "MissingExtraError"
