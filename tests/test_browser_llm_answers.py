"""Model-written answers as a reader sees them, in real headless Chromium (issue 10, rendering).

The app runs twice (retrieval-only, and with the loopback fake OpenAI server scripted to misbehave
the way real models do): an answer that ends inside a code fence must not swallow the sources
and notices; HTML in an answer shows as text; a removed bogus citation must not break bold or
quotes; a stream that breaks off shows the text received and one plain notice; the "LLMs can
make mistakes" line appears only when an LLM answers. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakes import browser as chromium
from tests.fakes.app_server import AppServer, extractive_and_llm_servers
from tests.fakes.browser import ANSWER, require_chromium, send, shot, wait_answer_done
from tests.fakes.llm_server import MODEL, FakeLLMServer

pytestmark = pytest.mark.browser

sync_api = require_chromium()
browser, page = chromium.browser, chromium.page  # fixtures, found under these names

QUESTION = "How do I deploy on Render?"
LLM_WARNING = "LLMs can make mistakes"


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as server:
        yield server


@pytest.fixture(scope="module")
def servers(sample_database: str, fake_llm: FakeLLMServer,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, AppServer]]:
    logs = tmp_path_factory.mktemp("llm-answer-logs")
    common = {"DATABASE_URL": sample_database, "ASSISTANT_SAMPLE_DOCS": "0",
              "ASSISTANT_DATA_DIR": str(tmp_path_factory.mktemp("llm-answer-data"))}
    with extractive_and_llm_servers("answers-", common, fake_llm.base_url, MODEL, logs) as started:
        yield started


def is_bold(page_or_locator: Any, text: str) -> bool:
    """Whether the element showing exactly `text` is rendered bold."""
    element = page_or_locator.get_by_text(text, exact=True).first
    return int(element.evaluate("e => parseInt(getComputedStyle(e).fontWeight)")) >= 600


def ask(page: Any, server: AppServer, question: str = QUESTION) -> Any:
    page.goto(server.url)
    send(page, question)
    wait_answer_done(page)
    page.wait_for_timeout(300)
    return page.locator(ANSWER).last


def test_unclosed_fence_does_not_swallow_the_sources(page: Any, servers: dict[str, AppServer],
                                                     fake_llm: FakeLLMServer) -> None:
    fake_llm.script(("answer", "Deploy with the blueprint [1]. Then run:\n\n```bash\nrender deploy --yes\n"))
    answer = ask(page, servers["llm"])
    shot(page, "browser-llm-unclosed-fence")
    code = answer.locator("pre")
    assert code.count() == 1 and "render deploy --yes" in code.inner_text()
    assert "Sources" not in code.inner_text() and "Also retrieved" not in code.inner_text()
    assert is_bold(answer, "Sources:")  # the footer is Markdown again, not text in the code box
    assert "```" not in answer.inner_text()


def test_html_and_removed_citations_render_as_written(page: Any, servers: dict[str, AppServer],
                                                      fake_llm: FakeLLMServer) -> None:
    fake_llm.script(("answer", 'Wrap the settings in <details> [1]; the blueprint is **fast [9]** and '
                               '"simple [0]"; `<b>` is code [2].'))
    answer = ask(page, servers["llm"])
    shot(page, "browser-llm-html-citations")
    text = answer.inner_text()
    assert "Wrap the settings in <details>" in text and "<b>" in text
    assert answer.locator("details").count() == 0  # shown, never made into an element
    assert is_bold(answer, "fast")  # bold survived the removed [9]
    assert '"simple"' in text and "[9]" not in text and "[0]" not in text and "**" not in text


def test_stream_that_breaks_off_shows_one_plain_notice(page: Any, servers: dict[str, AppServer],
                                                       fake_llm: FakeLLMServer) -> None:
    fake_llm.script(("cut", "Deploy with the render.yaml blueprint [1] and then"))
    answer = ask(page, servers["llm"])
    shot(page, "browser-llm-broke-off")
    text = answer.inner_text()
    assert "Deploy with the render.yaml blueprint" in text
    assert text.count("⚠️") == 1 and "The answer was cut off (the connection to the language model broke off)." in text
    assert fake_llm.base_url not in text and "OPENAI_BASE_URL" not in text


def test_llm_warning_only_when_an_llm_answers(page: Any, servers: dict[str, AppServer],
                                              fake_llm: FakeLLMServer) -> None:
    ask(page, servers["extractive"])
    watermark = page.locator(".watermark")
    assert LLM_WARNING not in watermark.inner_text()
    assert "Answers quote your documents" in watermark.inner_text()
    shot(page, "browser-watermark-retrieval-only")
    ask(page, servers["llm"])
    assert LLM_WARNING in page.locator(".watermark").inner_text()
