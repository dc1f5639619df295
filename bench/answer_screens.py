"""Retrieval-only answers on docs-python as a reader sees them: the real app in headless Chromium.

Starts `chainlit run assistant/app.py` (no LLM key) on the docs-python database that
bench/answers.py indexed (bench/.cache/answers/docs-python; run `python -m bench.answers --corpus
docs-python` first), asks the first N answerable English questions of
../shared/data/docs-python/questions.jsonl whose page is indexed (file order, no picking on
results) by typing them, and checks that
each answer leads with (first bold line, first citation) a passage of the expected page. Writes
test-artifacts/docs-python-NN.png for a person to look at and prints one line per question.

Usage: python -m bench.answer_screens [--questions 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from assistant.retrieval.loaders import load_file
from bench.answers import DATA_DIR, DOCS_PYTHON
from tests.conftest import ARTIFACTS
from tests.fakes.app_server import AppServer
from tests.fakes.browser import ANSWER, CHROMIUM, CHROMIUM_ARGS, wait_answer_done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=10)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    items = [json.loads(line) for line in (DOCS_PYTHON / "questions.jsonl").read_text(encoding="utf-8").splitlines()
             if line.strip()]
    from bench.answers import docs_python_retriever

    retriever = docs_python_retriever(ingest=False)  # while --prepare runs, only the pages indexed so far
    indexed = {Path(row["source"]).name for row in retriever.store.titles(limit=1000)}
    retriever.store.close()
    items = [q for q in items if q["kind"] == "answerable" and q["lang"] == "en" and set(q["expected"]) & indexed]
    items = items[: args.questions]
    print(f"{len(indexed)} of 80 pages indexed; asking {len(items)} questions", flush=True)
    titles = {name: load_file(DOCS_PYTHON / "pages" / name).title for q in items for name in q["expected"]}
    ARTIFACTS.mkdir(exist_ok=True)
    good = 0
    with tempfile.TemporaryDirectory() as tmp:
        app = AppServer("docs-python", {"ASSISTANT_DATA_DIR": str(DATA_DIR / "docs-python"),
                                        "ASSISTANT_SAMPLE_DOCS": "0"}, Path(tmp))
        try:
            app.wait_ready(300)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                page.set_default_timeout(120_000)
                for n, q in enumerate(items, 1):
                    page.goto(app.url)
                    page.locator("#chat-input").click()
                    page.keyboard.type(q["question"])
                    page.keyboard.press("Enter")
                    wait_answer_done(page, timeout=180)
                    answer = page.locator(ANSWER).last
                    lead = answer.locator(".font-bold").first.inner_text().strip()
                    ok = any(lead.startswith(titles[name].split(" — Python")[0]) for name in q["expected"])
                    good += ok
                    page.wait_for_timeout(300)
                    page.screenshot(path=str(ARTIFACTS / f"docs-python-{n:02d}.png"))
                    print(f"{'ok  ' if ok else 'MISS'} {n:02d} {q['question'][:70]!r} -> {lead[:90]!r}"
                          f" (expected {', '.join(q['expected'])})", flush=True)
                browser.close()
        finally:
            app.stop()
    print(f"{good}/{len(items)} answers lead with a passage of the expected page")


if __name__ == "__main__":
    main()
