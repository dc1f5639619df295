"""The real app in a real headless Chromium: full-page chat, scripted LLM, and the embedded widget.

Two `chainlit run assistant/app.py` servers start once for the module (retrieval-only, and with the
loopback fake OpenAI server as LLM), both on the session's sample-corpus database. The widget demo
page is served from a third port, so the widget really talks to the assistant cross-origin.
Screenshots go to test-artifacts/ for a person to look at.

Debian's /usr/bin/chromium only, never a downloaded browser. Without it these tests skip, unless
REQUIRE_BROWSER=1 (CI), where a missing browser is a failure.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from assistant.upstream_compat import DOM_HOOKS as HOOKS
from tests.fakes import browser as chromium
from tests.fakes.app_server import AppServer, extractive_and_llm_servers
from tests.fakes.browser import (
    ANSWER,
    CHROMIUM_ARGS,  # noqa: F401  (tests/test_access.py imports it from here)
    require_chromium,
    send,
    shot,
    wait_answer_done,
)
from tests.fakes.llm_server import MODEL, FakeLLMServer

QUESTION = "How do I deploy on Render?"

pytestmark = pytest.mark.browser

sync_api = require_chromium()
browser, page, demo_site = chromium.browser, chromium.page, chromium.demo_site  # fixtures, found under these names


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture(scope="module")
def servers(sample_database: str, fake_llm: FakeLLMServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, AppServer]]:
    """Both app servers, started together (start-up dominates this module's time)."""
    logs = tmp_path_factory.mktemp("browser-logs")
    common = {"DATABASE_URL": sample_database, "ASSISTANT_SAMPLE_DOCS": "0",
              "ASSISTANT_DATA_DIR": str(tmp_path_factory.mktemp("browser-data"))}
    with extractive_and_llm_servers("", common, fake_llm.base_url, MODEL, logs) as started:
        yield started


def test_full_page_chat_retrieval_only(page: Any, servers: dict[str, AppServer], sample_database: str) -> None:
    server = servers["extractive"]
    page.goto(server.url)
    assert page.title() == "Doc Assistant"
    starters = page.locator("#starters button")
    starters.first.wait_for()
    assert 1 <= starters.count() <= 4
    page.wait_for_function("document.querySelector('img.logo') && document.querySelector('img.logo').complete")
    page.wait_for_timeout(700)  # the welcome screen fades in
    shot(page, "browser-welcome")

    send(page, QUESTION)
    wait_answer_done(page)
    answer = page.locator(ANSWER).last
    assert "Retrieval-only answer" in answer.inner_text()
    # Chainlit's DOM as public/doc-assistant.js knows it (upstream_compat.DOM_HOOKS): the panel stays
    # closed until a citation is clicked, then shows that source.
    assert page.locator(HOOKS["side_panel_title"]).count() == 0  # sources open on a click, not by themselves
    step = page.get_by_text("Used document search")
    assert "passages" in step.inner_text()

    link = answer.locator(HOOKS["citation_link"], has_text="[1]").first
    link.click()
    panel = page.locator(HOOKS["side_panel_content"])
    panel.wait_for()
    assert "Passage 1" in panel.inner_text() and "Source:" in panel.inner_text()
    assert page.locator(HOOKS["side_panel_title"]).inner_text().strip() == "[1]"
    step.click()  # expand the search step
    page.get_by_text("Searched for:").wait_for()
    page.wait_for_timeout(400)
    shot(page, "browser-extractive")

    # thumbs down with a comment: stored with the question, the answer and the sources
    answer.locator("button.negative-feedback-off").click()
    page.locator("textarea").last.fill("The blueprint step is missing")
    page.locator("#submit-feedback").click()
    row = None
    for _ in range(50):
        with psycopg.connect(sample_database) as conn:
            row = conn.execute("SELECT value, comment, question, answer, jsonb_array_length(sources)"
                               " FROM chat_feedback WHERE comment = 'The blueprint step is missing'").fetchone()
        if row:
            break
        time.sleep(0.2)
    assert row is not None, "feedback was not stored"
    value, _comment, question, answer_text, n_sources = row
    assert value == 0 and question == QUESTION and "Retrieval-only" in answer_text and n_sources >= 1


def test_full_page_chat_with_a_streaming_llm(page: Any, servers: dict[str, AppServer],
                                             fake_llm: FakeLLMServer) -> None:
    text = ("Deploy from the repository's render.yaml blueprint: it creates the web service and a free "
            "PostgreSQL database [1]. Render then checks /healthz before the deploy goes live [2].")
    fake_llm.script(("answer", text, 0.03))
    page.goto(servers["llm"].url)
    send(page, QUESTION)
    answer = page.locator(ANSWER).last
    answer.get_by_text("Deploy from", exact=False).wait_for()
    partial = answer.inner_text()
    wait_answer_done(page)
    final = answer.inner_text()
    assert len(partial) < len(final) and "blueprint" in final  # it arrived token by token
    assert "Retrieval-only" not in final
    answer.locator("a.element-link", has_text="[2]").first.click()
    page.locator("#side-view-content").wait_for()
    page.wait_for_timeout(400)
    shot(page, "browser-llm")
    assert page.locator("#side-view-title").inner_text().strip() == "[2]"


def test_widget_on_a_third_party_page(page: Any, servers: dict[str, AppServer], demo_site: str) -> None:
    server = servers["extractive"]
    page.goto(f"{demo_site}/widget-demo.html?server={server.url}")
    page.locator("#chainlit-copilot-button").click()
    page.locator("#chat-input").wait_for()
    assert "Assistant loaded from" in page.locator("#widget-status").inner_text()
    send(page, QUESTION)
    wait_answer_done(page)
    answer = page.locator(ANSWER).last
    body = answer.inner_text()
    assert "Sources: [" in body and "(deploy-render.md)" in body, body
    assert answer.locator("a.element-link").count() == 0  # links, not side panels, in the widget
    page.wait_for_timeout(400)
    shot(page, "browser-widget")


def test_widget_demo_page_reports_a_bad_server_address(page: Any, demo_site: str) -> None:
    page.goto(f"{demo_site}/widget-demo.html?server=javascript:alert(1)")
    status = page.locator("#widget-status")
    assert "must be an http(s) address" in status.inner_text()
    assert page.locator("#chainlit-copilot-button").count() == 0
