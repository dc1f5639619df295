"""Retrieval-only answers as a reader sees them, in a real headless Chromium (no LLM key).

One `chainlit run assistant/app.py` server answers from the sample guide plus a probe page whose
text is full of things Markdown would swallow (`[1]`, `</body>` in inline code, `<b>tags</b>`,
`*stars*`, `argv[1]` in a code block). The tests check that:
- each starter question of the sample guide, and the questions the issue reported, lead with the
  passage that answers them (the first bold line names its section);
- document text shows as written in the answer, the side panel and the widget;
- code blocks and tables keep their shape; punctuation-only and very long questions get one line.
Screenshots go to test-artifacts/answers-*.png for a person to look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from assistant.retrieval import open_retriever
from assistant.retrieval.ingest import ingest_paths
from tests.conftest import make_settings
from tests.fakes import browser as chromium
from tests.fakes.app_server import AppServer
from tests.fakes.browser import ANSWER, require_chromium, shot, wait_answer_done

pytestmark = pytest.mark.browser

sync_api = require_chromium()
browser, page, demo_site = chromium.browser, chromium.page, chromium.demo_site  # fixtures, found under these names

PROBE = """# Zebra probe manual

## Literal brackets and tags

The zebra probe manual cites papers such as [1] and [2] in its text. Close the page with `</body>`
and keep <b>raw tags</b>, *stars*, _underscores_ and a [link](javascript:alert(1)) as written.

```python
import sys
print(sys.argv[1])
```
"""
PROBE_QUESTION = "What papers does the zebra probe manual cite?"
PROBE_TEXTS = ("such as [1] and [2]", "</body>", "<b>raw tags</b>", "*stars*", "_underscores_",
               "[link](javascript:alert(1))")

# Questions of the sample guide and the section their answer must lead with.
LEADS = {
    "How do I add my own documents?": "Quickstart › Add your own documents",
    "What should I do if the server runs out of memory?": "Troubleshooting › The server runs out of memory",
    "Which file types can I ingest?": "Ingesting documents › Supported file types",
    "Are there limits on questions or files?": "Frequently asked questions › Are there limits on questions or files?",
    "How do I turn on an LLM?": "Quickstart › Turn on an LLM (optional)",
    "How long does ingesting take?": "Ingesting documents › How long does it take?",
    "Why another RAG assistant?": "Doc Assistant: overview › Why another RAG assistant?",
    "How do I add two snippets to my page?":
        "Embedding the chat widget in your website › Add two snippets to your page",
}


@pytest.fixture(scope="module")
def server(create_database: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """The app on the sample guide plus the probe page, retrieval-only."""
    url = create_database()
    work = tmp_path_factory.mktemp("answers")
    docs = work / "docs"
    docs.mkdir()
    (docs / "zebra-probe.md").write_text(PROBE, encoding="utf-8")
    settings = make_settings(database_url=url, data_dir=work / "data", sample_docs=True)
    retriever = open_retriever(settings, announce=False)
    try:
        report = ingest_paths([docs], retriever.store, retriever.embedder, settings, progress=False, log=lambda _: None)
        assert report.chunks >= 1
    finally:
        retriever.store.close()
    app = AppServer("answers", {"DATABASE_URL": url, "ASSISTANT_SAMPLE_DOCS": "0",
                                "ASSISTANT_DATA_DIR": str(work / "app-data")}, work)
    app.wait_ready()
    yield app
    app.stop()


def ask(page: Any, text: str) -> Any:
    """Type a question as a person does and wait for the whole answer."""
    composer = page.locator("#chat-input")
    composer.click()
    page.keyboard.type(text)
    page.locator("#chat-submit").click()  # waits until the chat is connected (Enter before that is lost)
    try:
        wait_answer_done(page)
    except Exception:
        shot(page, f"answers-failed-{slug(text)}")  # what the reader saw instead
        raise
    return page.locator(ANSWER).last


def lead_of(answer: Any) -> str:
    """The section named on the answer's first bold line (the lead passage)."""
    return answer.locator(".font-bold").first.inner_text().strip()


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:50]


def test_starters_and_reported_questions_lead_with_their_passage(page: Any, server: AppServer) -> None:
    page.goto(server.url)
    page.locator("#starters button").first.wait_for()
    starters = [b.inner_text().strip() for b in page.locator("#starters button").all()]
    assert starters and all(s in LEADS for s in starters), f"starters without an expected lead: {starters}"
    for question, section in LEADS.items():
        page.goto(server.url)
        page.locator("#chat-input").wait_for()
        answer = ask(page, question)
        assert "Retrieval-only answer" in answer.inner_text()
        assert lead_of(answer) == section, f"{question!r} led with {lead_of(answer)!r}"
        first_link = answer.locator("a.element-link").first.inner_text().strip()
        assert first_link == answer.locator(".font-bold").first.locator("xpath=..").locator(
            "a.element-link").first.inner_text().strip()  # the first citation is the lead's
        page.wait_for_timeout(300)
        shot(page, f"answers-{slug(question)}")


def test_code_blocks_and_tables_keep_their_shape(page: Any, server: AppServer) -> None:
    page.goto(server.url)
    page.locator("#chat-input").wait_for()
    answer = ask(page, "Which file types can I ingest?")
    table = answer.locator("table")
    assert table.count() == 1
    assert ".html, .htm" in table.inner_text() and "PDF text layer" in table.inner_text()
    answer = ask(page, "How do I add my own documents?")
    code = answer.locator("pre code").first.inner_text()
    assert code.strip() == "python -m assistant ingest ~/notes docs/handbook.pdf"
    page.wait_for_timeout(300)
    shot(page, "answers-table-and-code")


def test_document_text_shows_as_written(page: Any, server: AppServer) -> None:
    page.goto(server.url)
    page.locator("#chat-input").wait_for()
    answer = ask(page, PROBE_QUESTION)
    text = answer.inner_text()
    for literal in (*PROBE_TEXTS[:-1], "and a link as written"):  # the answer quotes a link's text only
        assert literal in text, f"{literal!r} missing from the answer: {text!r}"
    code = answer.locator("pre code").first.inner_text().replace("\u2060", "")
    assert "print(sys.argv[1])" in code
    assert answer.locator("pre a").count() == 0  # `argv[1]` did not become a source link
    assert answer.locator("code", has_text="</body>").count() == 1
    assert answer.locator("b").count() == 0 and answer.locator("a[href^='javascript']").count() == 0
    page.wait_for_timeout(300)
    shot(page, "answers-literal-text")

    answer.locator("a.element-link", has_text="[1]").first.click()
    panel = page.locator("#side-view-content")
    panel.wait_for()
    panel_text = panel.inner_text()
    for literal in PROBE_TEXTS:
        assert literal in panel_text, f"{literal!r} missing from the side panel: {panel_text!r}"
    assert "print(sys.argv[1])" in panel.locator("pre code").first.inner_text()
    page.wait_for_timeout(400)
    shot(page, "answers-literal-panel")


def test_document_text_shows_as_written_in_the_widget(page: Any, server: AppServer, demo_site: str) -> None:
    page.goto(f"{demo_site}/widget-demo.html?server={server.url}")
    page.locator("#chainlit-copilot-button").click()
    page.locator("#chat-input").wait_for()
    answer = ask(page, PROBE_QUESTION)
    text = answer.inner_text()
    for literal in ("such as [1] and [2]", "</body>", "<b>raw tags</b>", "*stars*"):
        assert literal in text, f"{literal!r} missing from the widget answer: {text!r}"
    page.wait_for_timeout(400)
    shot(page, "answers-literal-widget")


def test_bad_questions_get_one_line(page: Any, server: AppServer) -> None:
    page.goto(server.url)
    page.locator("#chat-input").wait_for()
    composer = page.locator("#chat-input")
    composer.click()
    page.keyboard.type("?!... ---")
    page.locator("#chat-submit").click()  # waits until the chat is connected (Enter before that is lost)
    page.get_by_text("Please ask your question in words").wait_for()
    long_question = "How do I add my own documents? " + "Please explain in detail. " * 100
    answer = ask(page, long_question)
    assert "only its first" in answer.inner_text()
    assert lead_of(answer) == "Quickstart › Add your own documents"
    page.wait_for_timeout(300)
    shot(page, "answers-bad-input")

