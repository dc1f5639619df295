"""Hostile documents in a real headless Chromium (issue scenario 5): nothing a document or a model
says runs in the chat or in the widget; it shows as text.

A document full of XSS payloads (`<script>`, `onerror`/`onload` handlers, `javascript:` links in
HTML and in Markdown links and images, in its body, title, heading and URL) is ingested into a
fresh database; the payloads set `window.__pwned`, open an alert, or `fetch()` a loopback "watch"
server. Two app servers answer from it: retrieval-only (the document's own sentences are quoted
in the answer and the side panel) and with the fake LLM scripted to answer with payloads. The
test asserts no payload ran (no flag, no dialog, no request to the watch server, no live
element carrying a payload, across shadow roots) and that the payload text is visible. Screenshots
go to test-artifacts/hostile-*.png.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from assistant.retrieval import open_retriever
from assistant.retrieval.ingest import ingest_paths
from tests.conftest import make_settings
from tests.fakes import browser as chromium
from tests.fakes.app_server import AppServer, extractive_and_llm_servers
from tests.fakes.browser import ANSWER, require_chromium, send, shot, wait_answer_done
from tests.fakes.llm_server import MODEL, FakeLLMServer

pytestmark = pytest.mark.browser

sync_api = require_chromium()
browser, page, demo_site = chromium.browser, chromium.page, chromium.demo_site  # fixtures, found under these names

QUESTION = "What does the zanzibar payload test keep?"


class Watch:
    """A loopback HTTP server that records every request: any hit means a payload ran."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        watch = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self) -> None:
                watch.hits.append(f"{self.command} {self.path}")
                self.send_response(204)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()

            do_GET = do_POST = do_OPTIONS = _record

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def payload(label: str, watch: str) -> str:
    """JavaScript that leaves every trace we look for."""
    return f"window.__pwned='{label}';fetch('{watch}/{label}');alert('{label}')"


def hostile_markdown(w: str) -> str:
    return (
        "---\n"
        f"title: Zanzibar <img src=x onerror=\"{payload('title', w)}\"> guide\n"
        f"url: javascript:{payload('url', w)}\n"
        "---\n"
        f"# Zanzibar payloads <script>{payload('heading', w)}</script>\n\n"
        f"The zanzibar payload test keeps <script>{payload('script', w)}</script> as plain text.\n"
        f"The zanzibar payload test keeps <img src=x onerror=\"{payload('img', w)}\"> as plain text too.\n"
        f"The zanzibar payload test keeps [a link](javascript:{payload('mdlink', w)}) and "
        f"![an image](javascript:{payload('mdimg', w)}) inert.\n"
        f"The zanzibar payload test keeps <a href=\"javascript:{payload('ahref', w)}\">an anchor</a>, "
        f"<iframe src=\"javascript:{payload('iframe', w)}\"></iframe> and "
        f"<svg onload=\"{payload('svg', w)}\"></svg> as plain text.\n"
    )


def hostile_html(w: str) -> str:
    """Escaped markup in an HTML page becomes literal `<...>` text once loaded."""
    return (
        "<html><head><title>Zanzibar escaped payloads</title></head><body>"
        f"<p>The zanzibar payload test keeps &lt;img src=x onerror=\"{payload('html-img', w)}\"&gt; as text.</p>"
        f"<p>The zanzibar payload test keeps &lt;script&gt;{payload('html-script', w)}&lt;/script&gt; too.</p>"
        "</body></html>"
    )


@pytest.fixture(scope="module")
def watch() -> Iterator[Watch]:
    server = Watch()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hostile_database(create_database: Callable[[], str], watch: Watch,
                     tmp_path_factory: pytest.TempPathFactory) -> str:
    docs = tmp_path_factory.mktemp("hostile-docs")
    (docs / "payloads.md").write_text(hostile_markdown(watch.url), encoding="utf-8")
    (docs / "escaped.html").write_text(hostile_html(watch.url), encoding="utf-8")
    s = make_settings(database_url=create_database(), data_dir=tmp_path_factory.mktemp("hostile-data"))
    retriever = open_retriever(s, announce=False, sample_docs=False)
    try:
        report = ingest_paths([docs], retriever.store, retriever.embedder, s, progress=False, log=lambda m: None)
    finally:
        retriever.store.close()
    assert len(report.added) == 2, report.failed
    return s.database_url or ""


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture(scope="module")
def servers(hostile_database: str, fake_llm: FakeLLMServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, AppServer]]:
    logs = tmp_path_factory.mktemp("hostile-logs")
    common = {"DATABASE_URL": hostile_database, "ASSISTANT_SAMPLE_DOCS": "0", "MIN_SIMILARITY": "0",
              "ASSISTANT_DATA_DIR": str(tmp_path_factory.mktemp("hostile-app-data"))}
    with extractive_and_llm_servers("hostile-", common, fake_llm.base_url, MODEL, logs) as started:
        yield started


# Every element in the document and in every (open) shadow root.
_ALL_ELEMENTS = """() => {
  const out = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) { out.push(el); if (el.shadowRoot) walk(el.shadowRoot); }
  };
  walk(document);
  return out;
}"""

_LIVE_PAYLOADS = f"""() => {{
  const all = ({_ALL_ELEMENTS})();
  const bad = [];
  for (const el of all) {{
    const tag = el.tagName.toLowerCase();
    if (tag === 'script' && el.textContent.includes('__pwned')) bad.push('script element');
    if (tag === 'iframe' || (tag === 'img' && el.getAttribute('src') === 'x')) bad.push(tag + ' element');
    for (const attr of el.getAttributeNames()) {{
      const value = el.getAttribute(attr) || '';
      if (attr.startsWith('on') && value.includes('__pwned')) bad.push(tag + ' ' + attr);
      if (/^\\s*javascript:/i.test(value)) bad.push(tag + ' ' + attr + '=' + value.slice(0, 40));
    }}
  }}
  return bad;
}}"""


def watch_page(pg: Any) -> list[str]:
    """Record every dialog (an alert() payload) the page opens, dismissing it."""
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    pg.on("dialog", on_dialog)
    return dialogs


def assert_inert(pg: Any, watch: Watch, dialogs: list[str]) -> None:
    pg.wait_for_timeout(500)  # give any payload a moment to fire
    assert pg.evaluate("window.__pwned") is None
    assert dialogs == []
    assert watch.hits == []
    assert pg.evaluate(_LIVE_PAYLOADS) == []


def test_document_payloads_show_as_text_in_the_full_page_chat(page: Any, servers: dict[str, AppServer],
                                                              watch: Watch) -> None:
    dialogs = watch_page(page)
    page.goto(servers["extractive"].url)
    send(page, QUESTION + " <img src=x onerror=\"window.__pwned='question'\">")
    wait_answer_done(page)
    answer = page.locator(ANSWER).last
    text = answer.inner_text()
    assert "Retrieval-only answer" in text and "zanzibar payload test keeps" in text
    # the quote, as text (the retrieval-only answer drops tags from quotes; the panel shows them)
    assert "window.__pwned='html-script'" in text
    assert_inert(page, watch, dialogs)

    answer.locator("a.element-link", has_text="[1]").first.click()
    panel = page.locator("#side-view-content")
    panel.wait_for()
    page.wait_for_timeout(400)
    shot(page, "hostile-full-page")
    body = panel.inner_text()
    assert "Passage 1" in body and "zanzibar payload test" in body
    assert "<script>" in body or "onerror=" in body
    assert_inert(page, watch, dialogs)
    # the question's own payload is shown as typed
    assert "onerror=" in page.locator('[data-step-type="user_message"]').last.inner_text()


def test_model_answer_payloads_show_as_text(page: Any, servers: dict[str, AppServer], fake_llm: FakeLLMServer,
                                            watch: Watch) -> None:
    w = watch.url
    fake_llm.script(("answer", (
        f"The zanzibar test keeps <script>{payload('llm-script', w)}</script> as text [1]. "
        f"See <img src=x onerror=\"{payload('llm-img', w)}\"> and [this link](javascript:{payload('llm-link', w)}) "
        f"or ![this image](javascript:{payload('llm-mdimg', w)}) and <a href=\"javascript:{payload('llm-a', w)}\">"
        "that anchor</a> [2]."), 0.0))
    dialogs = watch_page(page)
    page.goto(servers["llm"].url)
    send(page, QUESTION)
    wait_answer_done(page)
    page.wait_for_timeout(400)
    shot(page, "hostile-llm-answer")
    text = page.locator(ANSWER).last.inner_text()
    assert "The zanzibar test keeps" in text and "Retrieval-only" not in text
    assert "<script>window.__pwned='llm-script'" in text and "<img src=x onerror=" in text  # shown, not run
    assert_inert(page, watch, dialogs)
    links = page.locator(ANSWER).last.locator("a")
    hrefs = [links.nth(i).get_attribute("href") or "" for i in range(links.count())]
    assert not [h for h in hrefs if h.strip().lower().startswith("javascript:")]
    # (GFM auto-links the http:// URL inside a payload's fetch(); a plain link a user could click,
    # not a script, so the test does not click it.)


def test_document_payloads_show_as_text_in_the_widget(page: Any, servers: dict[str, AppServer], demo_site: str,
                                                      watch: Watch) -> None:
    dialogs = watch_page(page)
    page.goto(f"{demo_site}/widget-demo.html?server={servers['extractive'].url}")
    page.locator("#chainlit-copilot-button").click()
    page.locator("#chat-input").wait_for()
    send(page, QUESTION)
    wait_answer_done(page)
    page.wait_for_timeout(400)
    shot(page, "hostile-widget")
    text = page.locator(ANSWER).last.inner_text()
    assert "zanzibar payload test keeps" in text and "Sources:" in text
    # the quote, as text (the retrieval-only answer drops tags from quotes; the panel shows them)
    assert "window.__pwned='html-script'" in text
    assert_inert(page, watch, dialogs)
