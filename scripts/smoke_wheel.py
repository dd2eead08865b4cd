"""Smoke test of an installed driftloop wheel without extras (scripts/smoke-wheel runs it from
a fresh venv, outside the checkout): the reporting SDK works and the heavy dependencies are
absent; the command line starts and names the extra a server command needs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import driftloop

SERVER_ONLY = ("sklearn", "scipy", "pandas", "matplotlib", "fastapi", "uvicorn")


def main() -> None:
    assert "site-packages" in driftloop.__file__, f"not the installed wheel: {driftloop.__file__}"
    present = [name for name in SERVER_ONLY if importlib.util.find_spec(name) is not None]
    assert not present, f"the lean install pulled in {present}"
    cli = str(Path(sys.executable).parent / "driftloop")
    version = subprocess.run([cli, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"driftloop {driftloop.__version__}", version.stdout
    subprocess.run([cli, "--help"], capture_output=True, check=True)
    with tempfile.TemporaryDirectory() as folder:
        project = Path(folder)
        (project / "driftloop.yaml").write_text("models: {}\n")
        served = subprocess.run([cli, "serve"], capture_output=True, text=True, cwd=project)
        assert served.returncode == 1, served
        assert "pip install 'driftloop[server]'" in served.stderr, served.stderr
        report_and_read_back(project)
    from driftloop import Client

    Client("http://127.0.0.1:9", api_key="k").close()
    print(f"driftloop {driftloop.__version__}: lean install OK")


def report_and_read_back(project: Path) -> None:
    from driftloop import SqlMetricStore, configure_insights, load_config, report_insights
    from driftloop.database import open_database
    from driftloop.insights import shutdown_insights

    config = load_config(project / "driftloop.yaml")
    configure_insights(config)
    start = time.time() - 1
    report_insights({"model_confidence": 0.93}, tags={"model": "smoke"})
    shutdown_insights()
    store = SqlMetricStore(
        open_database(config.store, base_dir=config.base_dir),
        raw_retention=86400,
        rollup_retention=86400,
    )
    [result] = store.query("model_confidence", "count", start, time.time() + 1)
    assert result.value == 1, result


if __name__ == "__main__":
    main()
