"""Take the README's dashboard screenshot from a real ``driftloop demo`` run.

    .venv/bin/python scripts/dashboard_screenshot.py                 # runs the demo first
    .venv/bin/python scripts/dashboard_screenshot.py --demo-out demo-out   # after `make demo`

Without ``--demo-out``, the demo runs first (``driftloop demo --no-browser``, into a temporary
folder). The demo stops its server when it ends, so the script serves the dashboard again over
the demo project's store (the project named in ``DEMO_OUT/summary.json``), logs in with a new
``dashboard`` key, opens the whole run as a custom range (``?start=&end=``) in the Chromium the
browser tests use (``DRIFTLOOP_TEST_CHROMIUM``, default ``/usr/bin/chromium``) and writes a
full-page PNG to ``docs/images/dashboard.png`` (``--out``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from driftloop.config import CONFIG_FILENAME, load_config  # noqa: E402
from driftloop.dashboard import (  # noqa: E402
    SECRET_FILE,
    SessionStore,
    StoreDashboardData,
    dashboard_router,
    resolve_session_secret,
)
from driftloop.database import open_database  # noqa: E402
from driftloop.serving.app import create_app  # noqa: E402
from driftloop.serving.keys import ApiKeyStore  # noqa: E402
from driftloop.timestamps import epoch_seconds  # noqa: E402

MODEL = "review-classifier"
DEMO_NOT_CLOSED = 3
"""The demo's exit code when the loop did not close (docs/cli.md): its run is still shown."""


def run_demo(folder: Path) -> Path:
    """``driftloop demo --no-browser`` into ``folder``; returns its output folder."""
    out = folder / "demo-out"
    driftloop = Path(sys.executable).parent / "driftloop"
    finished = subprocess.run(
        [
            str(driftloop),
            "demo",
            "--no-browser",
            "--project",
            str(folder / "project"),
            "--out",
            str(out),
        ],
        check=False,
    )
    if finished.returncode not in {0, DEMO_NOT_CLOSED}:
        raise SystemExit(f"driftloop demo failed (exit code {finished.returncode})")
    return out


def demo_range(demo_out: Path) -> tuple[Path, float, float]:
    """The demo's project folder and the span of its run (its timeline, a little padded)."""
    summary = json.loads((demo_out / "summary.json").read_text())
    timeline = json.loads((demo_out / "timeline.json").read_text())
    if not summary.get("closed"):
        print(
            f"warning: the demo did not close the loop: {summary.get('reasons')}; the "
            "screenshot shows it as it went (run again for the README)",
            file=sys.stderr,
        )
    moments = [epoch_seconds(entry["at"]) for entry in timeline]  # ISO 8601 UTC
    return Path(summary["project"]), min(moments) - 5.0, max(moments) + 5.0


def serve(project: Path) -> tuple[uvicorn.Server, threading.Thread, str, str]:
    """The dashboard over the demo project's store, on a free loopback port, and a key."""
    config = load_config(project / CONFIG_FILENAME)
    database = open_database(config.store, base_dir=config.base_dir)
    api_keys = ApiKeyStore(database)
    secret, _origin = resolve_session_secret(None, {}, config.path(SECRET_FILE))
    router = dashboard_router(
        StoreDashboardData.from_config(config),
        api_keys=api_keys,
        sessions=SessionStore(database),
        session_secret=secret,
    )
    app = create_app(config, api_keys=api_keys, models=[], extra_routers=[router], poll=False)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("the dashboard server did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    key = api_keys.create("dashboard", name="readme-screenshot").key
    return server, thread, f"http://127.0.0.1:{port}", key


def screenshot(url: str, key: str, start: float, end: float, out: Path, width: int) -> None:
    from playwright.sync_api import sync_playwright

    servicekit = importlib.import_module("servicekit")  # tests/: the browser tests' Chromium
    chromium: str = servicekit.CHROMIUM
    arguments: list[str] = servicekit.CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=arguments)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(f"{url}/login")
            page.fill("input[name=key]", key)
            page.click("button[type=submit]")
            page.wait_for_url(f"{url}/")
            page.goto(f"{url}/?model={MODEL}&start={start:.0f}&end={end:.0f}")
            page.wait_for_selector(".chart-card[data-panel='versions'] canvas")
            page.wait_for_selector("#live.ok")
            page.wait_for_timeout(1000)  # the fonts and a second poll
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--demo-out", type=Path, help="the --out folder of a finished demo run (default: run one)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "dashboard.png")
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="driftloop-screenshot-") as scratch:
        demo_out = args.demo_out or run_demo(Path(scratch))
        project, start, end = demo_range(demo_out)
        server, thread, url, key = serve(project)
        try:
            screenshot(url, key, start, end, args.out, args.width)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
