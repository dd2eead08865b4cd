"""The dashboard in headless Chromium, served by the real serving app over the real store.

The first tests each build their own installation; the later ones (after a rolled-back
retrain: readable 24-hour UTC time axes, plots as wide as their cards, an escalated incident,
the rollback's reason on the job and on the version, the serving panels, the class mix, the
links from an incident to its retrain job) share one installation, server and logged-in page.
All share the module's Chromium: starting Playwright's driver alone takes seconds on the CI
machine.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from dashboard.browsing import dashboard_server, log_in, watch_console
from dashboard.world import CONFIG, MODEL, MONITOR, DashboardWorld, open_world
from driftloop.pipeline.api import job_detail
from driftloop.registry import PRODUCTION

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser


@pytest.fixture
def base_url(world: DashboardWorld) -> Iterator[str]:
    with dashboard_server(world) as url:
        yield url


def _seed_history(world: DashboardWorld) -> float:
    now = time.time()
    v1 = world.register_version(extra_classes=False, accuracy=0.88)
    world.registry.set_alias(MODEL, PRODUCTION, v1.version, actor="tester")
    world.write_confidence(
        [0.91 + 0.02 * ((i * 7) % 5) / 4 for i in range(400)], end=now - 40, spacing=2
    )
    world.evaluate(now - 40)
    return now


def test_a_visitor_without_a_key_is_rejected(
    chromium_browser: Browser, base_url: str, world: DashboardWorld
) -> None:
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
        problems = watch_console(page)
        page.goto(f"{base_url}/")
        page.fill("input[name=key]", predict)
        page.click("button[type=submit]")
        assert "needs a 'dashboard' or 'admin' key" in page.locator(".error").inner_text()
        assert context.cookies() == []
        log_in(page, base_url, viewer.key)
        page.wait_for_selector("#live.ok", timeout=10_000)
        response = context.request.get(f"{base_url}/")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        world.api_keys.revoke(viewer.info.key_id)
        page.reload()
        assert page.url.startswith(f"{base_url}/login?next=")
        assert context.cookies() == []
        log_in(page, base_url, world.api_keys.create("dashboard").key)
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
        problems = watch_console(page)
        log_in(page, base_url, key)
        (cookie,) = context.cookies()
        assert cookie["httpOnly"] is True
        assert key not in cookie["value"]
        page.click("#ranges button[data-span='900']")

        card = page.locator(f".chart-card[data-monitor='{MONITOR}']")
        card.wait_for()
        page.wait_for_function(
            "() => Number(document.querySelector('.chart-card')?.dataset.points) > 100"
        )
        assert page.locator("#charts .chart-card canvas").count() == 1
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
            f"#monitor-table tr[data-monitor='{MONITOR}'][data-state='WARN']", timeout=10_000
        )
        page.wait_for_selector(".chart-card[data-state='WARN']", timeout=5_000)
        assert page.locator("#incidents details.incident").count() == 1
        assert int(card.get_attribute("data-points") or 0) > points_before
        last_avg = page.evaluate(
            "() => { const p = window.driftloopDashboard.view.charts.values().next().value.plot;"
            " const avg = p.data[1]; return avg[avg.length - 1]; }"
        )
        assert last_avg == pytest.approx(0.74)
        page.screenshot(path=str(tmp_path / "2-warn.png"), full_page=True)

        # It gets worse, a retrain job runs and v2 is deployed: all of it shows up live.
        later = time.time()
        world.write_confidence([0.52] * 120, end=later, spacing=0.25)
        world.evaluate(later)
        incident_id = next(e.incident_id for e in world.events if e.incident_id)
        world.run_retrain_job(incident_id)
        page.wait_for_selector(
            f"#monitor-table tr[data-monitor='{MONITOR}'][data-state='ALERT']", timeout=10_000
        )
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
    chromium_browser: Browser, base_url: str, world: DashboardWorld
) -> None:
    world.register_with_reference()
    now = time.time()
    world.write_predictions(now, [0.9] * 300, [5_000.0] * 300)  # long texts, very confident
    key = world.api_keys.create("dashboard", name="browser").key
    context = chromium_browser.new_context()
    try:
        page = context.new_page()
        problems = watch_console(page)
        log_in(page, base_url, key)
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


def test_a_hundred_thousand_points_draw_fast(
    chromium_browser: Browser, base_url: str, world: DashboardWorld
) -> None:
    _seed_history(world)
    key = world.api_keys.create("admin").key
    context = chromium_browser.new_context()
    try:
        page = context.new_page()
        problems = watch_console(page)
        log_in(page, base_url, key)
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


# -- after a rolled-back retrain: one installation and page for the tests below --------

LATENCY_MONITOR = "review-classifier latency"
TWO_MONITORS = (
    CONFIG
    + f"""
  - name: {LATENCY_MONITOR}
    metric: latency_ms
    aggregation: avg
    window: 60s
    group_by: [model]
    above: {{warning: 200, critical: 400}}
"""
)


class Seen:
    """The shared page and what the installation holds."""

    def __init__(
        self, page: Page, world: DashboardWorld, job_id: str, incident_id: str, problems: list[str]
    ) -> None:
        self.page = page
        self.world = world
        self.job_id = job_id
        self.incident_id = incident_id
        self.problems = problems


def _history(world: DashboardWorld) -> tuple[str, str]:
    """Fifty minutes of v1, a drop that opens a WARN incident which escalates to ALERT, then
    ten minutes of traffic with latency and errors, and a retrain job whose v2 was deployed
    and rolled back."""
    now = time.time()
    v1 = world.register_version(extra_classes=False, accuracy=0.88)
    world.registry.set_alias(MODEL, PRODUCTION, v1.version, actor="tester")
    t0 = now - 3500
    world.write_confidence([0.92 + 0.01 * (i % 3) for i in range(1200)], end=t0 + 2400, spacing=2)
    world.write_confidence([0.74] * 120, end=t0 + 2640, spacing=2)
    world.write_confidence([0.55] * 120, end=t0 + 2880, spacing=2)
    world.write_serving(now - 60, 540, errors={"5xx": 6, "4xx": 3})
    world.write_serving(now, 60, version="2", classes=("Food - Positive", "Other"))
    world.write_serving(now, 60, version="1", shadow=True)
    for moment in (2400, 2440, 2560, 2680, 2880):
        world.evaluate(t0 + moment)
    incident_id = next(e.incident_id for e in world.events if e.incident_id)
    return world.run_rolled_back_job(incident_id), incident_id


@pytest.fixture(scope="module")
def seen(chromium_browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seen]:
    root: Path = tmp_path_factory.mktemp("dashboard-views")
    with open_world(root, TWO_MONITORS) as world, dashboard_server(world) as url:
        job_id, incident_id = _history(world)
        context = chromium_browser.new_context(viewport={"width": 1400, "height": 1000})
        try:
            page = context.new_page()
            problems = watch_console(page)
            log_in(page, url, world.api_keys.create("dashboard").key)
            page.wait_for_selector(".chart-card[data-panel='versions'] canvas")
            page.wait_for_selector("#jobs details.job")
            yield Seen(page, world, job_id, incident_id, problems)
            assert problems == []
        finally:
            context.close()


LAYOUT = """() => {
    const measure = document.createElement("canvas").getContext("2d");
    measure.font = window.driftloopDashboard.AXIS_FONT;
    const view = window.driftloopDashboard.view;
    const rect = (node) => { const r = node.getBoundingClientRect();
                             return {left: r.left, right: r.right}; };
    return [...view.charts.values(), ...view.panels.values()].map((entry) => {
        const plot = entry.plot, axis = plot.axes[0];
        const labels = (axis._splits || []).map((ts, i) => ({ts, text: axis._values[i],
            x: plot.valToPos(ts, "x"),
            width: Math.max(...String(axis._values[i]).split("\\n")
                                 .map((line) => measure.measureText(line).width))}))
            .filter((label) => label.text !== null && label.text !== undefined);
        return {name: entry.card.dataset.monitor || entry.card.dataset.panel,
                plot: plot.width, container: entry.container.clientWidth,
                card: rect(entry.card), root: rect(plot.root),
                legend: rect(plot.root.querySelector(".u-legend")), labels};
    });
}"""


def _layout(page: Page, width: int) -> list[dict[str, Any]]:
    """Every plot's size, card, legend and time-axis labels once the page's content is at
    most ``width`` pixels wide: the layout changes without any window resize."""
    page.evaluate(f"() => {{ document.querySelector('main').style.maxWidth = '{width}px'; }}")
    page.wait_for_function(
        """() => [...window.driftloopDashboard.view.charts.values(),
                                     ...window.driftloopDashboard.view.panels.values()]
        .every((e) => Math.abs(e.plot.width - Math.floor(e.container.clientWidth)) < 1)""",
        timeout=5_000,
    )
    page.wait_for_timeout(50)  # the redraw after the resize
    layout: list[dict[str, Any]] = page.evaluate(LAYOUT)
    return layout


def _select_span(page: Page, seconds: int) -> None:
    page.click(f"#ranges button[data-span='{seconds}']")
    page.wait_for_function(
        f"() => window.driftloopDashboard.view.span === {seconds} && "
        f"[...window.driftloopDashboard.view.charts.values()].every((e) => "
        f"Math.abs(e.plot.scales.x.max - e.plot.scales.x.min - {seconds}) < 5)"
    )


CLOCK = re.compile(r"^(\d{2}):(\d{2})(:\d{2})?(\n\d{4}-\d{2}-\d{2})?$")


def test_time_axes_are_24_hour_utc_and_their_labels_never_overlap(seen: Seen) -> None:
    checked = 0
    for span in (900, 3600, 86400):
        _select_span(seen.page, span)
        for width in (600, 900, 1400):
            for chart in _layout(seen.page, width):
                labels = chart["labels"]
                assert len(labels) >= 2, (span, width, chart["name"])
                for label in labels:
                    match = CLOCK.match(label["text"])
                    assert match, f"{label['text']!r} is not a 24-hour clock"
                    utc = datetime.fromtimestamp(label["ts"], UTC)
                    assert (int(match[1]), int(match[2])) == (utc.hour, utc.minute)
                for left, right in itertools.pairwise(labels):
                    gap = right["x"] - left["x"] - (left["width"] + right["width"]) / 2
                    assert gap >= 8, (
                        f"{chart['name']} at {width}px, span {span}s: "
                        f"{left['text']!r} and {right['text']!r} {gap:.1f}px apart"
                    )
                checked += 1
    assert checked == 3 * 3 * 6  # two monitors' charts and four serving panels
    _select_span(seen.page, 3600)


SWEEP = """async ([end, span]) => {
    const measure = document.createElement("canvas").getContext("2d");
    measure.font = window.driftloopDashboard.AXIS_FONT;
    const width = (text) => Math.max(...String(text).split("\\n")
                                          .map((line) => measure.measureText(line).width));
    const points = Array.from({length: 200}, (_, i) => ({timestamp: end - span + i * span / 200,
        avg: 0.9, min: 0.8, max: 0.95, count: 1}));
    const chart = {monitor: "sweep", metric: "model_confidence", aggregation: "avg",
                   direction: "below", warning: 0.8, critical: 0.7, state: "OK", step: 1,
                   points, marks: []};
    const found = [];
    for (let px = 400; px <= 1400; px += 50) {
        const host = document.createElement("div");
        host.style.width = `${px}px`;
        document.body.append(host);
        const plot = window.driftloopDashboard.renderChart(host, chart, [end - span, end], null);
        await new Promise((resolve) => setTimeout(resolve, 0));
        const axis = plot.axes[0];
        for (let i = 1; i < axis._splits.length; i++) {
            const x = (k) => plot.valToPos(axis._splits[k], "x");
            const gap = x(i) - x(i - 1) - (width(axis._values[i]) + width(axis._values[i - 1])) / 2;
            found.push({px, gap, left: axis._values[i - 1], right: axis._values[i]});
        }
        plot.destroy();
        host.remove();
    }
    return found;
}"""


def test_time_axis_labels_keep_apart_at_any_width(seen: Seen) -> None:
    """Late morning UTC, the widest clock labels ("11:45am" in the 12-hour format the page drew
    before, which ran together at some widths): every chart width from 400 to 1,400 pixels."""
    end = datetime(2026, 12, 1, 11, 55, tzinfo=UTC).timestamp()
    for span in (900, 3600, 86400):
        pairs: list[dict[str, Any]] = seen.page.evaluate(SWEEP, [end, span])
        assert len(pairs) > 21
        tight = [p for p in pairs if p["gap"] < 8]
        assert tight == [], f"span {span}s: labels closer than 8px: {tight[:3]}"


def test_the_times_in_text_are_24_hour_utc(seen: Seen) -> None:
    state = next(s for s in seen.world.data.monitor_states(MODEL) if s.monitor == MONITOR)
    since = datetime.fromtimestamp(state.since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    row = seen.page.locator(f"#monitor-table tr[data-monitor='{MONITOR}']")
    assert since in row.inner_text()
    assert re.search(
        r"updated \d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", seen.page.locator("#live").inner_text()
    )
    assert not re.search(r"\b(am|pm|AM|PM)\b", seen.page.locator("main").inner_text())


PLOTTED = """async () => {
    const view = window.driftloopDashboard.view;
    const model = encodeURIComponent(view.model);
    const body = await (await fetch(`/dashboard/api/models/${model}?span=${view.span}`)).json();
    const [monitor, entry] = view.charts.entries().next().value;
    const chart = body.charts.find((c) => c.monitor === monitor);
    return {sent: [body.start, chart.points[0].timestamp, body.panels[0].timestamps[0]],
            read: window.driftloopDashboard.withSeconds(
                [body.start, chart.points[0].timestamp, body.panels[0].timestamps[0]]
                    .map((timestamp) => ({timestamp}))).map((m) => m.timestamp),
            plotted: entry.plot.data[0][0],
            fraction: window.driftloopDashboard.epochSeconds("2026-12-01T18:13:14.250000+00:00")};
}"""


def test_the_page_reads_the_iso_8601_moments_of_its_json(seen: Seen) -> None:
    """The JSON carries ISO 8601 UTC (#21 part 5); the page plots them as unix seconds."""
    found: dict[str, Any] = seen.page.evaluate(PLOTTED)
    assert all(isinstance(moment, str) and moment.endswith("+00:00") for moment in found["sent"])
    expected = [datetime.fromisoformat(moment).timestamp() for moment in found["sent"]]
    assert found["read"] == pytest.approx(expected, abs=1e-6)
    assert found["plotted"] == pytest.approx(found["read"][1], abs=60)  # the poll moved on
    assert found["fraction"] == datetime(2026, 12, 1, 18, 13, 14, 250000, UTC).timestamp()


def test_every_plot_spans_its_card_and_its_legend_fits(seen: Seen) -> None:
    for width in (1400, 700, 1100):  # the grid goes from two columns to one and back
        for chart in _layout(seen.page, width):
            name, card = chart["name"], chart["card"]
            assert chart["plot"] == pytest.approx(chart["container"], abs=1), name
            assert card["left"] <= chart["root"]["left"]
            assert chart["root"]["right"] <= card["right"] + 0.5, name
            assert chart["legend"]["right"] <= card["right"] + 0.5, f"{name}'s legend"
            assert chart["legend"]["left"] >= card["left"] - 0.5, f"{name}'s legend"


def test_an_escalated_incident_wears_its_state_once(seen: Seen) -> None:
    summary = seen.page.locator(f"#incident-{seen.incident_id} summary")
    assert summary.locator(".badge").inner_text() == "ALERT"
    heading = summary.locator(".heading").inner_text()
    assert heading == f"{MONITOR} for model={MODEL}"
    assert summary.locator(".escalated").inner_text() == "opened as WARN"


def test_a_rolled_back_job_says_why_without_being_opened(seen: Seen) -> None:
    job = seen.page.locator(f"#job-{seen.job_id}")
    assert job.get_attribute("data-state") == "rolled_back"
    assert job.get_attribute("open") is None
    reason = job.locator("summary .job-reason")
    assert reason.is_visible()
    shown = job_detail(seen.world.jobs, seen.job_id)["error"]  # what `driftloop jobs show` says
    assert shown.startswith("verification failed, rolled back")
    assert reason.inner_text() == shown


def test_the_versions_table_shows_the_rollback(seen: Seen) -> None:
    v2 = seen.page.locator("#versions-table tr[data-version='2']")
    assert v2.get_attribute("data-status") == "rolled back"
    status = v2.locator(".version-status").inner_text()
    assert "rolled back" in status
    assert "verification failed" in status
    assert "UTC" in status
    assert v2.locator(".job-link").get_attribute("data-target") == seen.job_id
    v1 = seen.page.locator("#versions-table tr[data-version='1']")
    assert v1.get_attribute("data-status") == "production"


def test_an_incident_links_to_its_retrain_job_and_back(seen: Seen) -> None:
    page = seen.page
    page.locator(f"#incident-{seen.incident_id} summary .job-link").click()
    job = page.locator(f"#job-{seen.job_id}")
    assert job.get_attribute("open") is not None
    assert page.evaluate("() => location.hash") == f"#job-{seen.job_id}"
    box = job.bounding_box()
    assert box is not None
    assert 0 <= box["y"] < 1000
    job.locator("summary .incident-link").click()
    incident = page.locator(f"#incident-{seen.incident_id}")
    assert incident.get_attribute("open") is not None
    assert "WARN → ALERT" in incident.locator("ol.timeline").inner_text()


def test_the_serving_panels_show_traffic_latency_errors_and_versions(seen: Seen) -> None:
    panels: dict[str, Any] = seen.page.evaluate("""() => Object.fromEntries(
        [...window.driftloopDashboard.view.panels.entries()].map(([name, e]) => [name, {
            labels: e.plot.series.slice(1).map((s) => s.label),
            peaks: e.plot.data.slice(1).map((d) => Math.max(...d.filter((v) => v !== null))),
            meta: e.card.querySelector(".meta").textContent}]))""")
    assert set(panels) == {"traffic", "latency", "errors", "versions"}
    assert panels["traffic"]["labels"] == ["texts/s", "requests/s"]
    assert panels["traffic"]["peaks"] == [pytest.approx(2.0), pytest.approx(1.0)]
    # the confidence history's 1,440 texts came without a latency (no request reported it)
    assert panels["traffic"]["meta"].startswith("600 requests · 2640 texts")
    assert panels["latency"]["labels"] == ["avg", "max"]
    assert panels["latency"]["peaks"][1] == pytest.approx(24.0)
    assert panels["errors"]["labels"] == ["4xx errors", "5xx errors"]
    assert panels["errors"]["meta"].startswith("9 errors · 1.48 % of predict requests")
    assert panels["versions"]["labels"] == ["v1", "v2", "v1 shadow"]


def test_the_class_mix(seen: Seen) -> None:
    rows = seen.page.locator("#class-mix-table tbody tr")
    shown = {
        rows.nth(i).get_attribute("data-class"): rows.nth(i).inner_text()
        for i in range(rows.count())
    }
    assert list(shown) == ["Food - Positive", "Food - Negative", "Other"]
    assert "600" in shown["Food - Positive"]
    assert "50.0 %" in shown["Food - Positive"]
    assert "540" in shown["Food - Negative"]
    assert "45.0 %" in shown["Food - Negative"]
    assert "5.0 %" in shown["Other"]
