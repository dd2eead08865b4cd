"""The dashboard in headless Chromium, served by the real serving app over the real store."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import uvicorn
from fastapi import FastAPI

from dashboard.world import MODEL, MONITOR, DashboardWorld
from driftloop.dashboard import SessionStore, dashboard_router, load_session_secret
from driftloop.registry import PRODUCTION
from driftloop.serving.app import create_app

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page

pytestmark = pytest.mark.browser

class ServerThread:
    """uvicorn on 127.0.0.1 with an OS-chosen port, in a thread."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                lifespan="on")
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


@pytest.fixture
def base_url(world: DashboardWorld) -> Iterator[str]:
    router = dashboard_router(
        world.data, api_keys=world.api_keys, sessions=SessionStore(world.database),
        session_secret=load_session_secret(world.root / ".driftloop" / "dashboard-secret"),
    )
    app = create_app(world.config, api_keys=world.api_keys, models=[], extra_routers=[router],
                     poll=False)
    with ServerThread(app) as url:
        yield url


def _watch_console(page: Page) -> list[str]:
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type in {"error", "warning"}:
            problems.append(f"console {message.type}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    return problems


def _log_in(page: Page, base_url: str, key: str) -> None:
    page.goto(f"{base_url}/")
    assert page.url.startswith(f"{base_url}/login?next=")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/")


def _seed_history(world: DashboardWorld) -> float:
    now = time.time()
    v1 = world.register_version(extra_classes=False, accuracy=0.88)
    world.registry.set_alias(MODEL, PRODUCTION, v1.version, actor="tester")
    world.write_confidence([0.91 + 0.02 * ((i * 7) % 5) / 4 for i in range(400)],
                           end=now - 40, spacing=2)
    world.evaluate(now - 40)
    return now


def test_a_visitor_without_a_key_is_rejected(chromium_browser: Browser, base_url: str,
                                             world: DashboardWorld) -> None:
    context = chromium_browser.new_context()
    try:
        page = context.new_page()
        response = page.goto(f"{base_url}/")
        assert response is not None
        assert response.ok
        assert page.url == f"{base_url}/login?next=%2F"
        assert page.locator("input[name=key]").is_visible()
        api = context.request.get(f"{base_url}/dashboard/api/models/{MODEL}")
        assert api.status == 401
        page.fill("input[name=key]", "dl_0000abcd_" + "x" * 30)
        page.click("button[type=submit]")
        assert page.locator(".error").inner_text() == "unknown API key"
        assert page.url.startswith(f"{base_url}/login")
        assert context.cookies() == []
    finally:
        context.close()


def test_a_predict_key_is_refused_and_a_revoked_key_logged_out(
    chromium_browser: Browser, base_url: str, world: DashboardWorld
) -> None:
    predict = world.api_keys.create("predict", name="web-client").key
    viewer = world.api_keys.create("dashboard", name="viewer")
    context = chromium_browser.new_context()
    try:
        page = context.new_page()
        problems = _watch_console(page)
        page.goto(f"{base_url}/")
        page.fill("input[name=key]", predict)
        page.click("button[type=submit]")
        assert "needs a 'dashboard' or 'admin' key" in page.locator(".error").inner_text()
        assert context.cookies() == []
        _log_in(page, base_url, viewer.key)
        page.wait_for_selector("#live.ok", timeout=10_000)
        response = context.request.get(f"{base_url}/")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        world.api_keys.revoke(viewer.info.key_id)
        page.reload()
        assert page.url.startswith(f"{base_url}/login?next=")
        assert context.cookies() == []
        _log_in(page, base_url, world.api_keys.create("dashboard").key)
        page.click("text=log out")
        page.wait_for_url(f"{base_url}/login")
        page.goto(f"{base_url}/")
        assert page.url.startswith(f"{base_url}/login?next=")
        refused = ("status of 401", "status of 403")  # the refused login, the ended session
        assert [p for p in problems if not any(r in p for r in refused)] == []
    finally:
        context.close()


def test_the_dashboard_shows_data_goes_warn_and_updates_live(
    chromium_browser: Browser, base_url: str, world: DashboardWorld, tmp_path: Path
) -> None:
    _seed_history(world)
    key = world.api_keys.create("dashboard", name="browser").key
    context = chromium_browser.new_context(viewport={"width": 1400, "height": 1300})
    try:
        page = context.new_page()
        problems = _watch_console(page)
        _log_in(page, base_url, key)
        (cookie,) = context.cookies()
        assert cookie["httpOnly"] is True
        assert key not in cookie["value"]
        page.click("#ranges button[data-span='900']")

        card = page.locator(f".chart-card[data-monitor='{MONITOR}']")
        card.wait_for()
        page.wait_for_function(
            "() => Number(document.querySelector('.chart-card')?.dataset.points) > 100")
        assert page.locator(".chart-card canvas").count() == 1
        state_row = page.locator(f"#monitor-table tr[data-monitor='{MONITOR}']")
        assert state_row.get_attribute("data-state") == "OK"
        assert page.locator("#models button.active").inner_text().strip() == MODEL
        assert "v1" in page.locator("#versions").inner_text()
        page.screenshot(path=str(tmp_path / "1-healthy.png"), full_page=True)
        page.evaluate("() => { window.notReloaded = true; }")
        points_before = int(card.get_attribute("data-points") or 0)

        # The drop arrives while the page is open: WARN without a reload.
        now = time.time()
        world.write_confidence([0.74] * 30, end=now, spacing=1)
        world.evaluate(now)
        page.wait_for_selector(
            f"#monitor-table tr[data-monitor='{MONITOR}'][data-state='WARN']", timeout=10_000)
        page.wait_for_selector(".chart-card[data-state='WARN']", timeout=5_000)
        assert page.locator("#incidents details.incident").count() == 1
        assert int(card.get_attribute("data-points") or 0) > points_before
        last_avg = page.evaluate(
            "() => { const p = window.driftloopDashboard.view.charts.values().next().value.plot;"
            " const avg = p.data[1]; return avg[avg.length - 1]; }")
        assert last_avg == pytest.approx(0.74)
        page.screenshot(path=str(tmp_path / "2-warn.png"), full_page=True)

        # It gets worse, a retrain job runs and v2 is deployed: all of it shows up live.
        later = time.time()
        world.write_confidence([0.52] * 120, end=later, spacing=0.25)
        world.evaluate(later)
        incident_id = next(e.incident_id for e in world.events if e.incident_id)
        world.run_retrain_job(incident_id)
        page.wait_for_selector(
            f"#monitor-table tr[data-monitor='{MONITOR}'][data-state='ALERT']", timeout=10_000)
        page.wait_for_selector("#jobs details.job", timeout=10_000)
        page.wait_for_selector("#versions tr[data-version='2']", timeout=10_000)
        assert "production" in page.locator("#versions tr[data-version='2']").inner_text()
        page.locator("#incidents details.incident summary").click()
        page.locator("#jobs details.job summary").click()
        assert "WARN → ALERT" in page.locator("#incidents ol.timeline").inner_text()
        assert "loss 0.41" in page.locator("#jobs").inner_text()
        time.sleep(2.5)  # one more poll: open <details> stay open across refreshes
        assert page.locator("#jobs details.job[open]").count() == 1
        assert page.evaluate("() => window.notReloaded") is True
        page.screenshot(path=str(tmp_path / "3-alert-retrained.png"), full_page=True)
        assert problems == []
    finally:
        context.close()


def test_the_accuracy_table_says_when_the_estimate_may_not_hold(
    chromium_browser: Browser, base_url: str, world: DashboardWorld,
) -> None:
    world.register_with_reference()
    now = time.time()
    world.write_predictions(now, [0.9] * 300, [5_000.0] * 300)  # long texts, very confident
    key = world.api_keys.create("dashboard", name="browser").key
    context = chromium_browser.new_context()
    try:
        page = context.new_page()
        problems = _watch_console(page)
        _log_in(page, base_url, key)
        row = page.locator("#accuracy-table tr[data-version='1']")
        row.wait_for(timeout=10_000)
        assert row.get_attribute("data-holds") == "false"
        text = row.inner_text()
        assert "1.000" in text  # every prediction above the threshold ...
        assert "may not hold" in text  # ... which the page does not take at its word
        assert "model_confidence differs" in text
        assert "text_length differs" in text
        assert problems == []
    finally:
        context.close()


def test_a_hundred_thousand_points_draw_fast(chromium_browser: Browser, base_url: str,
                                             world: DashboardWorld) -> None:
    _seed_history(world)
    key = world.api_keys.create("admin").key
    context = chromium_browser.new_context()
    try:
        page = context.new_page()
        problems = _watch_console(page)
        _log_in(page, base_url, key)
        page.wait_for_selector(".chart-card canvas")
        elapsed_ms = page.evaluate("""() => {
            const n = 100000, start = Date.now() / 1000 - n;
            const points = Array.from({length: n}, (_, i) => {
                const v = 0.9 - 0.2 * Math.sin(i / 5000) + 0.01 * Math.sin(i);
                return {timestamp: start + i, avg: v, min: v - 0.05, max: v + 0.02, count: 3};
            });
            const chart = {monitor: "perf", metric: "model_confidence", aggregation: "avg",
                           direction: "below", warning: 0.8, critical: 0.7, state: "OK",
                           step: 1, points, marks: [{timestamp: start + 50000, kind: "deploy",
                           label: "set v2"}]};
            const host = document.createElement("div");
            host.style.width = "1200px";
            document.body.append(host);
            const t0 = performance.now();
            const plot = window.driftloopDashboard.renderChart(
                host, chart, [start, start + n], null);
            const elapsed = performance.now() - t0;
            window.perfPlot = plot;
            return elapsed;
        }""")
        assert page.evaluate("() => window.perfPlot.data[0].length") == 100_000
        assert elapsed_ms < 1500, f"drawing 100,000 points took {elapsed_ms:.0f} ms"
        assert problems == []
    finally:
        context.close()
