"""Uploads and `/documents` in the real app, in a real headless Chromium, through the file chooser.

One `chainlit run assistant/app.py` server on a database of its own (the sample corpus plus what
the tests upload; the shared sample database stays read-only for other modules), with uploads
open (no login) and a 1 MB limit. Screenshots of the upload's progress line, the answer from the
uploaded file and the document list go to test-artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import browser as chromium
from tests.fakes.app_server import AppServer
from tests.fakes.browser import ANSWER, require_chromium, shot

pytestmark = [pytest.mark.browser, pytest.mark.slow]

sync_api = require_chromium()
browser, page = chromium.browser, chromium.page  # fixtures, found under these names

FACT = "The Zorblax flux capacitor needs exactly 42 gigawatts to start"
TOPICS = ["boiler room", "lead cupboard", "blue socket", "night shift", "spare fuses", "cooling loop",
          "inspection log", "visitor badges", "fire doors", "roof hatch", "alarm panel", "coffee machine"]


def zorblax_manual() -> str:
    """A Markdown manual long enough (about 11 passages) for the progress line to be seen moving."""
    parts = ["# Zorblax operations manual", "", "## Starting the Zorblax", "", FACT + ", from the blue socket only."]
    parts.append("")
    for i in range(10):
        topic = TOPICS[i % len(TOPICS)]
        parts += [f"## Procedure {i + 1}: the {topic}", ""]
        parts += [" ".join(f"Step {j + 1} of the {topic} procedure number {i + 1} asks the operator to check"
                           f" gauge {chr(65 + j)} and write the reading in the {topic} log before moving on."
                           for j in range(9)), ""]
    return "\n".join(parts)


@pytest.fixture(scope="module")
def server(create_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    logs = tmp_path_factory.mktemp("upload-browser-logs")
    env = {"DATABASE_URL": create_database(), "ASSISTANT_SAMPLE_DOCS": "1", "UPLOAD_MAX_MB": "1",
           "ASSISTANT_DATA_DIR": str(tmp_path_factory.mktemp("upload-browser-data"))}
    app = AppServer("uploads", env, logs)
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("upload-files")
    made = {"zorblax-manual.md": zorblax_manual().encode(), "report.docx": b"PK\x03\x04 a word file",
            "huge.txt": b"all work and no play " * 100_000}
    for name, data in made.items():
        (folder / name).write_bytes(data)
    return {name: folder / name for name in made}


def choose_files(page: Any, paths: list[Path]) -> None:
    """Pick files for the composer's attach button (its file input), as the file chooser does.

    Chainlit's drop zone opens the picker with the File System Access API where the browser has
    it, which Playwright's `expect_file_chooser` does not see; the input behind the button is what
    the picker fills, and what a drop fills too.
    """
    page.locator("#upload-button").wait_for()
    page.set_input_files("#upload-button-input", [str(p) for p in paths])


def type_and_send(page: Any, text: str) -> None:
    page.locator("#chat-input").click()
    page.keyboard.type(text)
    page.locator("#chat-submit").click()


def test_upload_with_progress_then_an_answer_from_the_file(page: Any, server: AppServer,
                                                           files: dict[str, Path]) -> None:
    page.goto(server.url)
    page.locator("#chat-input").wait_for()
    choose_files(page, [files["zorblax-manual.md"]])
    page.get_by_text("zorblax-manual.md").first.wait_for()  # the attachment in the composer
    page.locator("#upload-button").wait_for()  # not "#upload-button-loading": the file is on the server
    type_and_send(page, "How many gigawatts does the flux capacitor need?")

    progress = page.get_by_text(re.compile(r"Indexing zorblax-manual\.md · \d+ of \d+ passages embedded"))
    progress.wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"Indexing zorblax-manual\.md · [1-9]\d* of \d+ passages")).wait_for(timeout=120_000)
    shot(page, "browser-upload-progress")  # the count moving
    assert re.search(r"\d+ of (\d+) passages", progress.inner_text())

    page.get_by_text(re.compile(r"Added zorblax-manual\.md: \d+ passages indexed")).wait_for(timeout=300_000)
    answer = page.locator(ANSWER).filter(has_text="Sources:").last
    answer.wait_for(timeout=60_000)
    page.locator(".loading-cursor").wait_for(state="detached", timeout=60_000)
    text = answer.inner_text()
    assert "42 gigawatts" in text and "Zorblax operations manual" in text, text
    answer.locator("a.element-link", has_text="[1]").first.click()
    panel = page.locator("#side-view-content")
    panel.wait_for()
    page.wait_for_timeout(400)
    shot(page, "browser-upload-answer")

    original = panel.get_by_role("link", name=re.compile("Open the original document"))
    href = original.get_attribute("href")
    assert href and re.search(r"/documents/\d+$", href), href
    response = page.request.get(href)  # the browser's own cookies and origin
    assert response.status == 200 and response.headers["content-type"] == "text/plain; charset=utf-8"
    assert FACT in response.text() and "sandbox" in response.headers["content-security-policy"]


def test_bad_files_are_refused_in_the_browser(page: Any, server: AppServer, files: dict[str, Path]) -> None:
    page.goto(server.url)
    page.locator("#chat-input").wait_for()
    choose_files(page, [files["report.docx"]])
    page.wait_for_timeout(800)
    assert page.get_by_text("report.docx").count() == 0  # the picker's accept list keeps it out
    choose_files(page, [files["huge.txt"]])
    page.get_by_text(re.compile("larger than|too large|too big", re.I)).first.wait_for(timeout=10_000)
    page.wait_for_timeout(300)
    shot(page, "browser-upload-too-large")
    assert page.get_by_text("huge.txt").count() == 0


def test_documents_list_and_remove_with_a_confirmation(page: Any, server: AppServer, files: dict[str, Path]) -> None:
    page.goto(server.url)
    page.locator("#chat-input").wait_for()
    type_and_send(page, "/documents zorblax")
    listing = page.locator('[data-step-type="assistant_message"]').filter(has_text="Indexed:").last
    listing.wait_for()
    text = listing.inner_text()
    assert "Zorblax operations manual" in text and "uploaded" in text, text
    page.get_by_role("button", name="documents", exact=True).click()  # the composer's command button...
    page.locator("#chat-submit").click()  # ...sends with no text at all
    full = page.locator('[data-step-type="assistant_message"]').filter(has_text="By origin:").last
    full.get_by_text("Show more").wait_for()
    page.wait_for_timeout(400)
    shot(page, "browser-documents-list")
    assert re.search(r"Indexed: \d+ documents", full.inner_text())

    listing.get_by_role("button", name=re.compile("Remove Zorblax")).click()
    confirm = page.locator('[data-step-type="assistant_message"]').filter(has_text="from the index?").last
    confirm.wait_for()
    assert "uploaded file is deleted too" in confirm.inner_text()
    confirm.get_by_role("button", name="Yes, remove it").click()
    page.get_by_text(re.compile(r"Removed Zorblax operations manual and its uploaded file")).wait_for()
    page.wait_for_timeout(300)
    shot(page, "browser-documents-removed")
    assert confirm.get_by_role("button", name="Yes, remove it").count() == 0  # the buttons went away
    listing.get_by_role("button", name=re.compile("Remove Zorblax")).click()  # the stale button: removed twice
    page.get_by_text("That document is not indexed any more").wait_for()
