"""Headless Debian Chromium through Playwright, loading a page served on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import Browser, Playwright

from servicekit import ManagedService

pytestmark = pytest.mark.browser

PAGE = b"""<!doctype html>
<html><head><title>driftloop dashboard</title></head>
<body><h1 id="status">model healthy</h1>
<script>document.getElementById("status").dataset.rendered = "yes";</script></body></html>
"""


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        del format, args


@pytest.fixture
def page_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_loads_a_local_page_and_reads_its_title(chromium_browser: Browser, page_url: str) -> None:
    assert chromium_browser.browser_type.name == "chromium"
    assert chromium_browser.version.split(".")[0].isdigit()
    _check_page(chromium_browser, page_url)


def test_long_lived_chromium_over_devtools_protocol(
    playwright_driver: Playwright, page_url: str
) -> None:
    service = ManagedService("chromium")
    url = service.start()
    try:
        assert url.startswith("http://127.0.0.1:")
        browser = playwright_driver.chromium.connect_over_cdp(url)
        try:
            _check_page(browser, page_url)
        finally:
            browser.close()
    finally:
        service.stop()


def _check_page(browser: Browser, url: str) -> None:
    page = browser.new_page()
    try:
        response = page.goto(url)
        assert response is not None
        assert response.status == 200
        assert page.title() == "driftloop dashboard"
        # JavaScript ran: the script set a data attribute.
        assert page.get_attribute("#status", "data-rendered") == "yes"
        assert page.inner_text("#status") == "model healthy"
    finally:
        page.close()
