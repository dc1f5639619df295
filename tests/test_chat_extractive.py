"""Retrieval-only answers: led by the passage retrieval ranked first (unless one just below is
clearly about the question), its best part shown as written with code, lists and tables intact."""

from __future__ import annotations

from assistant.chat.blocks import split_blocks
from assistant.chat.extractive import (
    LABEL_LLM_DOWN,
    LABEL_NO_LLM,
    MAX_CODE_LINES,
    extractive_answer,
    split_sentences,
)
from assistant.literal_markdown import WORD_JOINER
from assistant.retrieval.types import Hit

START = """The shortest way to start is:

```bash
python -m assistant serve
```

This starts the chat UI on http://localhost:8000. Try asking "How do I add my own PDFs?"."""

ADD = """Point the ingest command at one or more files or folders:

```bash
python -m assistant ingest ~/notes docs/handbook.pdf
```

Then reload the chat page and ask a question about them."""

TYPES = """| extension | how it is read |
|---|---|
| `.md` | Markdown; headings and fenced code blocks are kept |
| `.pdf` | PDF text layer, page by page |

Text files are read as UTF-8."""

MEMORY = ("On a 512 MB host, use the `local` or `hf` provider for queries, keep `DB_POOL_MAX` small, and lower "
          "the Chainlit `session_timeout` so disconnected sessions are released.")
FOLLOW_UPS = ('After "How do I deploy to Render?" you can ask "and how much memory does it get?". A follow-up like '
              "that is a poor search query on its own, because the server cannot tell what it refers to.")


def hit(rank: int, text: str, title: str, *sections: str) -> Hit:
    return Hit(chunk_id=rank, document_id=rank, rank=rank, score=1 / rank, title=title,
               source=f"/docs/{rank}.md", text=text, heading_path=[title, *sections], similarity=0.88)


def body(text: str) -> str:
    return text.split("\n\n", 1)[1]


def test_the_first_passage_leads_with_its_section_named_and_cited() -> None:
    hits = [hit(1, MEMORY, "Troubleshooting", "The server runs out of memory"),
            hit(2, FOLLOW_UPS, "Chat", "Follow-up questions")]
    answer = extractive_answer("What should I do if the server runs out of memory?", hits)
    assert answer.text.startswith(LABEL_NO_LLM + "\n\n")
    assert body(answer.text).startswith("**Troubleshooting › The server runs out of memory** [1]\n\nOn a 512 MB host")
    assert answer.cited[0] == 1
    assert "Follow\\-up" not in answer.text and 2 not in answer.cited  # the passage about another question


def test_a_passage_just_below_leads_when_its_section_names_the_question() -> None:
    hits = [hit(1, START, "Quickstart", "Start the chat"), hit(2, ADD, "Quickstart", "Add your own documents")]
    answer = extractive_answer("How do I add my own documents?", hits)
    assert answer.cited[0] == 2
    text = body(answer.text)
    assert text.startswith("**Quickstart › Add your own documents** [2]")
    # the steps in order, the code block whole
    assert text.index("Point the ingest command") < text.index("```bash\npython -m assistant ingest ~/notes "
                                                             "docs/handbook.pdf\n```") < text.index("Then reload")
    assert "assistant serve" not in text


def test_a_passage_that_only_shares_words_does_not_lead() -> None:
    hits = [hit(1, MEMORY, "Troubleshooting", "Memory"), hit(2, FOLLOW_UPS, "Chat", "Follow-up questions")]
    answer = extractive_answer("and how much memory does it get on Render?", hits)
    assert answer.cited[0] == 1


def test_a_table_is_shown_as_a_table() -> None:
    hits = [hit(1, ADD, "Quickstart", "Add your own documents"),
            hit(2, TYPES, "Ingesting documents", "Supported file types")]
    answer = extractive_answer("Which file types can I ingest?", hits)
    assert answer.cited[0] == 2
    text = body(answer.text)
    assert "| extension | how it is read |\n|---|---|\n| ` .md ` | Markdown\\; headings" in text
    assert "Text files are read as UTF\\-8\\." in text


def test_document_text_is_escaped_and_code_keeps_its_brackets() -> None:
    text = ("The guide cites papers such as [1] and [2]. Close it with `</body>` and keep <b>tags</b> and *stars* "
            "and a [link](javascript:alert(1)):\n\n```python\nprint(sys.argv[1])\n```")
    full = extractive_answer("which papers does the guide cite", [hit(1, text, "Guide")])
    shown = body(full.text)
    assert "such as \\[1\\] and \\[2\\]" in shown
    assert "` </body> `" in shown
    assert "\\<b\\>tags\\<\\/b\\>" in shown and "\\*stars\\*" in shown
    assert "javascript" not in shown and "link" in shown  # link text quoted, its target not
    assert f"print(sys.argv[{WORD_JOINER}1])" in shown  # Chainlit would link a bare [1] inside code
    compact = extractive_answer("which papers does the guide cite", [hit(1, text, "Guide")], compact=True)
    assert "print(sys.argv[1])" in compact.text  # the widget has no source links to collide with


def test_long_passages_are_cut_at_sentences_and_code_at_lines() -> None:
    sentences = [f"Sentence {i} talks about topic{i} at some length to fill the passage nicely." for i in range(30)]
    sentences[17] = "The answer about zebras is right here in sentence seventeen."
    long_para = " ".join(sentences)
    answer = body(extractive_answer("what about zebras", [hit(1, long_para, "Long")]).text)
    assert "\u2026 " in answer and "zebras is right here" in answer and len(answer) < 1200
    code = "Run this:\n\n```\n" + "\n".join(f"line {i}" for i in range(40)) + "\n```"
    answer = body(extractive_answer("run this", [hit(1, code, "Code")]).text)
    assert f"line {MAX_CODE_LINES - 1}\n\u2026\n```" in answer and f"line {MAX_CODE_LINES + 1}" not in answer


def test_support_is_at_most_two_cited_passages_that_match_well() -> None:
    hits = [hit(1, MEMORY, "Troubleshooting", "The server runs out of memory"),
            hit(2, FOLLOW_UPS, "Chat", "Follow-up questions"),
            hit(3, "A running server needs roughly 250 MB of memory with the local provider on Render.",
                "Deploying to Render", "Memory on 512 MB"),
            hit(4, "The database server runs out of disk when memory is short, and the server stops.",
                "Operations", "Server memory"),
            hit(5, "The server memory can run out when many users connect; the server then restarts.",
                "Scaling", "Server memory limits")]
    answer = extractive_answer("What should I do if the server runs out of memory?", hits)
    assert answer.cited[0] == 1 and 2 not in answer.cited
    assert 1 <= len(answer.cited) <= 3
    assert "*Also relevant:*" in answer.text
    compact = extractive_answer("What should I do if the server runs out of memory?", hits, compact=True)
    assert compact.cited == [1]


def test_fallback_label_when_the_llm_failed() -> None:
    answer = extractive_answer("memory", [hit(1, MEMORY, "Troubleshooting")], llm_failed=True)
    assert answer.text.startswith(LABEL_LLM_DOWN)


def test_empty_passages_still_say_where_to_look() -> None:
    answer = extractive_answer("anything", [hit(1, "   ", "Tables")])
    assert answer.cited == [] and '"Tables"' in answer.text


def test_questions_without_content_words_get_the_start_of_the_first_passage() -> None:
    answer = extractive_answer("What is it?", [hit(1, ADD, "Quickstart", "Add your own documents")])
    assert answer.cited == [1] and "Point the ingest command" in answer.text


def test_blocks_keep_structure() -> None:
    text = "Intro:\n\n- one\n- two\n  wrapped\n\n```\ncode\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n### Sub\n\nText."
    kinds = [b.kind for b in split_blocks(text)]
    assert kinds == ["para", "list", "code", "table", "heading", "para"]
    unclosed = split_blocks("Before.\n\n```python\nx = 1")
    assert [b.kind for b in unclosed] == ["para", "code"]


def test_sentence_splitter_respects_abbreviations() -> None:
    text = "Use a vector DB, e.g. pgvector. Version 0.8 works. Dr. Smith agrees! Done?"
    assert split_sentences(text) == ["Use a vector DB, e.g. pgvector.", "Version 0.8 works.",
                                     "Dr. Smith agrees!", "Done?"]


def test_the_second_passage_leads_when_it_is_more_similar_and_says_much_more() -> None:
    first = hit(1, "Sorting can also be done on keys of a dictionary; the result is a new list.", "Sorting HOWTO",
                "Odds and ends")
    second = hit(2, "Use json.dumps(obj, indent=4, sort_keys=True) to turn a nested dictionary into an indented, "
                    "human-readable string with its keys sorted.", "json", "Basic usage")
    first.similarity, second.similarity = 0.862, 0.872
    question = "How can I turn a nested dictionary into an indented, human-readable string with sorted keys?"
    assert extractive_answer(question, [first, second]).cited[0] == 2
    second.similarity = 0.85  # less similar: retrieval's order stands
    assert extractive_answer(question, [first, second]).cited[0] == 1
