"""Headless Chromium for browser tests: Debian's /usr/bin/chromium through Playwright, never a
downloaded browser, plus the helpers every browser test module needs.

Use from a test module:

    from tests.fakes.browser import require_chromium
    sync_api = require_chromium()          # skips the module (or fails under REQUIRE_BROWSER=1)
    from tests.fakes.browser import browser, demo_site, page  # noqa: E402,F401  (fixtures)
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ARTIFACTS, ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ANSWER = '[data-step-type="assistant_message"]'


def require_chromium() -> Any:
    """Playwright's sync API, or skip the calling module when Chromium is missing (CI: fail instead)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("REQUIRE_BROWSER") == "1":
            raise RuntimeError(f"REQUIRE_BROWSER=1 but {CHROMIUM} is missing: apt-get install chromium")
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium); browser tests skipped", allow_module_level=True)
    return pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module."""
    sync_api = require_chromium()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context (no shared cookies or storage) and page for one test."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()


@pytest.fixture(scope="module")
def demo_site() -> Iterator[str]:
    """public/ served on its own port: the widget demo page plays a third-party site."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(ROOT / "public")))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def shot(page: Any, name: str) -> Path:
    """A screenshot in test-artifacts/ for a person to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def send(page: Any, text: str) -> None:
    """Type a question and send it (the button is enabled once the chat is connected)."""
    page.locator("#chat-input").fill(text)
    page.locator("#chat-submit").click()


def wait_answer_done(page: Any, timeout: float = 60.0) -> None:
    """Until the last answer has its sources line and the stream has ended (no blinking cursor)."""
    answer = page.locator(ANSWER).last
    answer.get_by_text("Sources:").wait_for(timeout=timeout * 1000)
    page.locator(".loading-cursor").wait_for(state="detached", timeout=timeout * 1000)
