"""What the chat shows, without Chainlit: escaping, source panels, footers, search step, starters, settings."""

from __future__ import annotations

import re

import pytest

from assistant.chat.events import Answer
from assistant.literal_markdown import (
    WORD_JOINER,
    escape_inline,
    guard_refs_in_code,
    inline_literal,
    link,
    literal_markdown,
    safe_url,
)
from assistant.retrieval.errors import QueryError
from assistant.retrieval.types import Hit, SearchResult
from assistant.ui.options import SearchOptions, parse_filter_text, search_options
from assistant.ui.retrieval_view import retrieval_markdown, step_title
from assistant.ui.sources import (
    answer_footer,
    answer_markdown,
    describe,
    element_name,
    notices_line,
    shown_numbers,
    source_panel,
    sources_metadata,
)
from assistant.ui.starters import build_starters, question_for

HOSTILE = """Intro <script>alert('x')</script> and <img src=x onerror=alert(1)>.
[click](javascript:alert(1)) ![pic](http://evil.example/p.png) :::warning
# Not a heading | a | b |
```
unclosed fence with ``` inside and <b>bold</b>"""


def hit(n: int, **kw: object) -> Hit:
    base: dict = {"chunk_id": 100 + n, "document_id": n, "rank": n, "score": 0.03 / n, "title": f"Doc {n}",
                  "source": f"/srv/docs/doc{n}.md", "text": f"Passage number {n}.",
                  "heading_path": [f"Doc {n}", "Setup"]}
    base.update(kw)
    return Hit(**base)


def unescaped(markdown: str, token: str) -> bool:
    """True when `token` occurs in `markdown` with its first character not backslash-escaped."""
    return any(m.start() == 0 or markdown[m.start() - 1] != "\\" for m in re.finditer(re.escape(token), markdown))


# -- markdown ------------------------------------------------------------------------------------


def test_escape_inline_makes_every_markdown_character_literal() -> None:
    out = escape_inline("a *b* _c_ <d> [e](f) `g` | h # i\n j")
    assert out == r"a \*b\* \_c\_ \<d\> \[e\]\(f\) \`g\` \| h \# i j"
    assert escape_inline("x" * 50, limit=10) == "xxxxxxxxx…"


def test_tables_render_as_tables_and_code_keeps_brackets_out_of_source_links() -> None:
    md = literal_markdown("Cites [1].\n\n| key | value |\n|---|---|\n| `a` | <b>x</b> |\n\n```\nargv[1]\n```")
    assert "Cites \\[1\\]\\." in md
    assert "| key | value |\n|---|---|\n| ` a ` | \\<b\\>x\\<\\/b\\> |" in md
    guarded = guard_refs_in_code(md + "\n\nInline `x[2]` and [3].")
    assert f"argv[{WORD_JOINER}1]" in guarded and f"x[{WORD_JOINER}2]" in guarded
    assert guarded.endswith("and [3].") and "Cites \\[1\\]" in guarded  # our own citations stay links


def test_literal_markdown_neutralises_html_links_images_and_fences() -> None:
    out = literal_markdown(HOSTILE)
    for token in ("<script", "<img", "](javascript", "![", ":::"):
        assert not unescaped(out.split("```")[0], token), token
    # the unclosed fence is closed by a longer fence, so nothing after it escapes the code block
    code = re.search(r"^(`{4,})\n(.*)\n\1$", out, re.S | re.M)
    assert code is not None and "<b>bold</b>" in code.group(2) and "``` inside" in code.group(2)


def test_literal_markdown_reflows_wrapped_prose_and_keeps_lists() -> None:
    out = literal_markdown("First line\ncontinues here.\n\n- item one\n  wrapped\n- item two\n1. numbered")
    assert "First line continues here\\." in out
    assert "• item one wrapped\\" in out and "• item two\\" in out and "1\\. numbered" in out


def test_inline_literal_keeps_code_spans_and_bold_only() -> None:
    out = inline_literal("**Note:** run `pip install x<1` then <b>go</b> `` a`b ``")
    assert out.startswith("**Note\\:**")
    assert "` pip install x<1 `" in out  # inside a code span: literal, not HTML
    assert "\\<b\\>go\\<\\/b\\>" in out
    assert "``  a`b  ``" in out  # a backtick inside: a longer fence, content kept as is


@pytest.mark.parametrize("url,ok", [
    ("https://docs.example.com/a b", False), ("javascript:alert(1)", False), ("data:text/html,x", False),
    ("/relative/path", False), ("https://docs.example.com/page?x=1#y", True), ("http://h/<x>", True),
])
def test_safe_url(url: str, ok: bool) -> None:
    assert (safe_url(url) is not None) is ok
    if ok:
        assert "<" not in safe_url(url) and ">" not in safe_url(url)


def test_link_escapes_label_and_drops_unsafe_targets() -> None:
    assert link("A [b]", "https://x.example/p") == r"[A \[b\]](<https://x.example/p>)"
    assert link("A", "javascript:alert(1)") == "A"


# -- sources -------------------------------------------------------------------------------------


def test_source_panel_shows_title_section_page_source_passage_and_link() -> None:
    h = hit(1, text=HOSTILE, url="https://docs.example.com/doc1", page=7,
            heading_path=["Doc 1 <b>", "Install", "Linux"], title="Doc 1 <b>")
    md = source_panel(1, h)
    assert md.startswith("### [Doc 1 \\<b\\>](<https://docs.example.com/doc1>)")
    assert "**Section:** Install › Linux" in md and "**Page:** 7" in md
    assert "**Source:** docs\\.example\\.com\\/doc1" in md
    assert "Open the original document" in md
    quoted = [line for line in md.splitlines() if line.startswith(">")]
    assert quoted, "the passage is quoted"
    assert not any(unescaped(line, "<script") for line in quoted if "`" not in line)


def test_source_panel_without_url_has_no_link() -> None:
    md = source_panel(2, hit(2))
    assert "](<" not in md and "Open the original" not in md


def make_answer(**kw: object) -> Answer:
    sources = [hit(i) for i in range(1, 6)]
    base: dict = {"text": "Do this [1] and that [3].", "kind": "generated", "sources": sources, "cited": [1, 3],
                  "also_retrieved": [2, 4, 5], "notices": [], "query": "q"}
    base.update(kw)
    return Answer(**base)


def test_footer_lists_cited_then_also_retrieved_with_element_names() -> None:
    a = make_answer()
    footer = answer_footer(a, llm_enabled=True)
    first, second = footer.split("\n\n")[:2]
    assert first.startswith("**Sources:** [1] Doc 1 › Setup · [3] Doc 3 › Setup")
    assert second.startswith("*Also retrieved:* [2] Doc 2") and "[5]" in second
    assert shown_numbers(a) == [1, 3, 2, 4, 5]
    assert element_name(3) == "[3]"


def test_widget_footer_uses_links_or_file_names_and_escaped_numbers() -> None:
    a = make_answer()
    a.sources[0].url = "https://docs.example.com/one"
    footer = answer_footer(a, llm_enabled=True, widget=True)
    assert "\\[1\\] [Doc 1 › Setup](<https://docs.example.com/one>)" in footer
    assert "\\[3\\] Doc 3 › Setup (doc3\\.md)" in footer
    assert "[1]" not in footer.replace("\\[1\\]", "")  # no bare [n]: nothing for Chainlit to link


def test_retrieval_only_label_only_when_the_text_has_none() -> None:
    plain = make_answer(kind="extractive", text="Quoted [1].")
    assert "Retrieval-only answer" in answer_footer(plain, llm_enabled=False)
    labelled = make_answer(kind="extractive", text="*Retrieval-only answer (x): ...*\n\nQuoted [1].")
    assert "Retrieval-only" not in answer_footer(labelled, llm_enabled=False)
    assert "Retrieval-only" not in answer_footer(make_answer(), llm_enabled=True)


def test_notices_become_one_escaped_line() -> None:
    line = notices_line(["The language model timed out after 30 s (LLM_TIMEOUT); showing a retrieval-only answer.",
                         "Your message was 50,000 characters long; only its first 2,000 were used."])
    assert line is not None and "\n" not in line and line.startswith("⚠️ *") and "LLM\\_TIMEOUT" in line
    assert notices_line([" ", ""]) is None


def test_no_answer_lists_closest_passages() -> None:
    a = make_answer(kind="no_answer", cited=[], also_retrieved=[1, 2], text="I couldn't find it.")
    md = answer_markdown(a, llm_enabled=False)
    assert md.startswith("I couldn't find it.") and "Closest passages (not a match):* [1]" in md


def test_sources_metadata_records_what_was_shown() -> None:
    meta = sources_metadata(make_answer())
    assert [m["n"] for m in meta] == [1, 3, 2, 4, 5]
    assert meta[0]["cited"] and not meta[2]["cited"]
    assert meta[0]["text"] == "Passage number 1." and meta[0]["chunk_id"] == 101


def test_describe_skips_a_heading_that_repeats_the_title() -> None:
    assert describe(hit(1, heading_path=["Doc 1", "A", "B"], page=3)) == "Doc 1 › A › B\\, page 3"
    assert describe(hit(1, heading_path=["Other", "A"])) == "Doc 1 › Other › A"


# -- search step ---------------------------------------------------------------------------------


def test_retrieval_view_shows_query_rewrite_hits_timing_and_degradation() -> None:
    hits = [hit(1, similarity=0.91), hit(2, title="Pipes | in title", page=4)]
    result = SearchResult(query="how much memory does a render instance get", mode="hybrid", hits=hits,
                          degraded=True, degraded_reason="HF API returned 503", notices=["question truncated"],
                          timings_ms={"embed_ms": 12.0, "search_ms": 30.0, "total_ms": 42.0})
    md = retrieval_markdown(result, typed="and how much memory?", filters="tag=deploy", elapsed_ms=45.0)
    assert "**Searched for:** how much memory does a render instance get" in md
    assert "*Rewritten from your follow-up:* and how much memory\\?" in md
    assert "**Filter:** tag\\=deploy" in md and "45 ms" in md and "embedding 12 ms" in md
    assert "Degraded: full-text only" in md and "HF API returned 503" in md and "question truncated" in md
    assert "| 1 | 0.0300 | 0.910 | Doc 1 | Setup |" in md
    assert "Pipes \\| in title" in md and "Doc 2 › Setup\\, page 4" in md
    assert step_title(result, 45.0) == "document search (full-text only) · 2 passages · 45 ms"
    assert step_title(None) == "document search"


def test_retrieval_view_without_hits() -> None:
    md = retrieval_markdown(SearchResult(query="zzz", mode="text", hits=[]))
    assert "No passage matched" in md and "full-text only" in md


# -- starters ------------------------------------------------------------------------------------


def test_starters_read_naturally_and_come_from_distinct_documents() -> None:
    rows = [
        {"title": "Frequently asked questions", "chunk_count": 9,
         "sections": ["Can I use a bigger embedding model?", "Is my data sent anywhere?", "Options"]},
        {"title": "Quickstart", "chunk_count": 8, "sections": ["Install", "Add your own documents", "Run the tests"]},
        {"title": "Troubleshooting", "chunk_count": 7, "sections": ["The database is unreachable"]},
        {"title": "Deploying to Render", "chunk_count": 9, "sections": ["Health checks", "Step by step"]},
        {"title": "Ingesting documents", "chunk_count": 5, "sections": ["How long does it take?"]},
        {"title": "", "chunk_count": 50, "sections": ["ignored"]},
    ]
    starters = build_starters(rows)
    messages = [s.message for s in starters]
    assert len(messages) == 4 and len(set(messages)) == 4
    assert messages[0] in ("Can I use a bigger embedding model?", "Is my data sent anywhere?")
    assert "What should I do if the database is unreachable?" in messages
    assert any(m.startswith("How do I ") and m.endswith("?") for m in messages)
    assert all(len(s.label) <= 70 for s in starters)
    assert question_for("Deploying to Render", "Health checks") == (
        "What does “Deploying to Render” say about health checks?")
    assert question_for("Ingesting documents", "How long does it take?") == (
        "Ingesting documents: how long does it take?")
    assert question_for("Embedding providers", "Hugging Face API errors").endswith("about Hugging Face API errors?")
    assert question_for("Guide", None) == "What does “Guide” cover?"
    assert build_starters([]) == []


def test_starters_on_messy_real_documents_are_good_or_absent() -> None:
    python_docs = " — Python 3.11.2 documentation"
    rows = [  # man pages, Sphinx pages with permalink marks and a site suffix, papers without sections
        {"title": "git-show(1)", "chunk_count": 30, "sections": ["NAME", "SYNOPSIS", "DESCRIPTION", "GIT"]},
        {"title": "git-diff(1)", "chunk_count": 40, "sections": ["OPTIONS", "Combined diff format"]},
        {"title": "json — JSON encoder and decoder" + python_docs, "chunk_count": 31,
         "sections": ["Basic Usage¶", "json.dump(obj, fp, *, skipkeys=False)¶", "Encoders and Decoders¶"]},
        {"title": "pickle — Python object serialization" + python_docs, "chunk_count": 40,
         "sections": ["What can be pickled and unpickled?¶"]},
        {"title": "Sorting HOW TO" + python_docs, "chunk_count": 9, "sections": ["Examples¶"]},
        {"title": "Systematic review of vitamin D and cardiovascular outcomes in older adults.",
         "chunk_count": 1, "sections": []},
        {"title": "METHODS", "chunk_count": 1, "sections": ["SEARCH STRATEGY"]},
    ]
    messages = [s.message for s in build_starters(rows, limit=10)]
    assert "What can be pickled and unpickled?" in messages
    assert "What does “git-diff” say about combined diff format?" in messages
    assert "what does “json” say about encoders and decoders?" in [m.lower() for m in messages]
    for m in messages:
        assert "¶" not in m and "documentation" not in m and "(1)" not in m, m
        assert not any(w in m for w in ("NAME", "SYNOPSIS", "DESCRIPTION", "STRATEGY", "METHODS")), m
        assert "sEARCH" not in m and "GIT?" not in m and "vitamin" not in m and "json.dump(" not in m, m
    assert build_starters([{"title": "A long paper title about many things in medicine.", "sections": []}]) == []


# -- settings ------------------------------------------------------------------------------------


def test_search_options_clamp_and_fall_back() -> None:
    assert search_options({"top_k": 50, "mode": "bogus"}, 5) == SearchOptions(k=20, mode="hybrid")
    assert search_options({"top_k": "x"}, 5).k == 5
    assert search_options(None, 7) == SearchOptions(k=7)
    opts = search_options({"top_k": 3.0, "mode": "text", "source_filter": " tag=faq  type=md "}, 5)
    assert (opts.k, opts.mode, opts.filters) == (3, "text", ("tag=faq", "type=md"))
    assert opts.filter_dict == {"tag": "faq", "type": "md"}


def test_filter_box_accepts_prefixes_and_key_values() -> None:
    assert parse_filter_text("/srv/docs/My Handbook/") == ("source=/srv/docs/My Handbook/",)
    assert parse_filter_text('"/srv/docs/a b/" tag=x') == ("source=/srv/docs/a b/", "tag=x")
    assert parse_filter_text("") == ()


@pytest.mark.parametrize("text", ["colour=red", "tag=a tag=b", 'x="y', "document_id=abc"])
def test_filter_box_errors_are_one_line_query_errors(text: str) -> None:
    with pytest.raises(QueryError) as info:
        search_options({"source_filter": text}, 5)
    assert "\n" not in str(info.value) and str(info.value).startswith("Search filter:")
