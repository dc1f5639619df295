"""Citation checking: valid, invalid, grouped and adjacent markers, also while streaming."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.chat.citations import StreamingCitationFilter, also_retrieved, parse_citations, strip_citations


def stream(chunks: list[str], n: int) -> tuple[list[str], StreamingCitationFilter]:
    f = StreamingCitationFilter(n)
    out = [f.feed(c) for c in chunks]
    out.append(f.flush())
    return out, f


def test_valid_citations_are_kept_in_first_appearance_order() -> None:
    r = parse_citations("Install with pip [2]. Then run it [1]. Also [2].", 3)
    assert r.text == "Install with pip [2]. Then run it [1]. Also [2]."
    assert r.cited == [2, 1]
    assert r.invalid == []
    assert r.also_retrieved == [3]


def test_number_without_source_is_removed_and_flagged() -> None:
    r = parse_citations("It uses pgvector [1]. It also flies [9]. Done [0].", 5)
    assert "[9]" not in r.text and "[0]" not in r.text
    assert r.text == "It uses pgvector [1]. It also flies. Done."
    assert r.invalid == [9, 0]
    assert r.cited == [1]
    assert r.also_retrieved == [2, 3, 4, 5]


def test_comma_lists_and_adjacent_markers_become_single_markers() -> None:
    r = parse_citations("A [1, 2]. B [3][4]. C [2; 5]. D [1-3].", 5)
    assert r.text == "A [1][2]. B [3][4]. C [2][5]. D [1][2][3]."
    assert r.cited == [1, 2, 3, 4, 5]


def test_mixed_group_keeps_the_valid_numbers() -> None:
    r = parse_citations("Works [1, 9] fine.", 5)
    assert r.text == "Works [1] fine."
    assert r.invalid == [9]


def test_removed_group_leaves_no_double_space() -> None:
    assert parse_citations("one [7] two", 2).text == "one two"
    assert parse_citations("line [7]\nnext", 2).text == "line\nnext"


def test_non_citation_brackets_and_code_are_untouched() -> None:
    text = "- [ ] task, [x] done, [see above], `items[1]` and\n```python\nrow[9] = 1\n```\nok [1]"
    r = parse_citations(text, 1)
    assert r.text == text
    assert r.invalid == []
    assert r.cited == [1]


def test_streaming_filter_joins_a_marker_split_over_chunks() -> None:
    out, f = stream(["Answer ", "[", "1", "]", " and more ", "[2", "]."], 2)
    assert "".join(out) == "Answer [1] and more [2]."
    assert "[" not in out[1] and out[1] == ""  # the "[" was held back, never shown alone
    assert f.cited == [1, 2]


def test_streaming_filter_never_shows_an_invalid_marker() -> None:
    out, f = stream(["See ", "[", "9", "]", ". Fine [", "1", "]"], 5)
    assert all("9" not in piece for piece in out)
    assert "".join(out) == "See. Fine [1]"
    assert f.invalid == [9]


def test_flush_drops_a_dangling_partial_marker() -> None:
    out, f = stream(["The answer was cut [", "1"], 3)
    assert "".join(out) == "The answer was cut"
    assert f.cited == []


def test_flush_keeps_a_dangling_ordinary_bracket() -> None:
    out, _ = stream(["array [see"], 3)
    assert "".join(out) == "array [see"


def test_also_retrieved_and_strip_citations() -> None:
    assert also_retrieved([3, 1], 4) == [2, 4]
    assert strip_citations("Use it [1]. Really [2, 3]!") == "Use it. Really!"


def test_removed_group_keeps_closing_emphasis_and_quotes_glued_to_their_word() -> None:
    assert parse_citations("It is **fast [9]**.", 2).text == "It is **fast**."
    assert parse_citations("It is **fast [9]** and small.", 2).text == "It is **fast** and small."
    assert parse_citations('He said "it works [9]" and left.', 2).text == 'He said "it works" and left.'
    assert parse_citations("It is _done [7]_ now", 2).text == "It is _done_ now"
    assert parse_citations("It is \u201cdone [7]\u201d now", 2).text == "It is \u201cdone\u201d now"
    # An opening delimiter after a removed group keeps its space.
    assert parse_citations('as [9] "quoted" text and [9] **bold**', 2).text == 'as "quoted" text and **bold**'


def test_a_citation_written_as_inline_code_is_a_citation() -> None:
    r = parse_citations("See `[2]` and `[9]`, also `[1, 7]`.", 2)
    assert r.text == "See [2] and, also [1]."
    assert r.cited == [2, 1] and r.invalid == [9, 7]
    # Real code stays code, even with brackets and numbers in it.
    for code in ("`items[1]`", "`[x]`", "`a[0] = [9]`", "`` `[3]` ``", "`[1`"):
        assert parse_citations(f"code {code} stays", 2).text == f"code {code} stays"


def test_zero_negative_and_huge_numbers_are_removed() -> None:
    r = parse_citations("A [0]. B [-1]. C [999999999999]. D [1].", 2)
    assert r.text == "A. B. C. D [1]."
    assert r.cited == [1] and 0 in r.invalid and 999999999999 in r.invalid


_pieces = st.sampled_from(
    ["Install", " with", " pip", " ", "[", "1", "2", "9", "]", ",", ".", "\n", "`", "x", "[1]", "[9]", "**", "\"",
     "_", "-1", "0"]
)


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(_pieces, max_size=30), cuts=st.lists(st.integers(0, 200), max_size=8))
def test_streaming_equals_whole_text_for_any_chunking(parts: list[str], cuts: list[int]) -> None:
    text = "".join(parts)
    whole = parse_citations(text, 2)
    bounds = sorted({0, len(text), *[c % (len(text) + 1) for c in cuts]})
    chunks = [text[a:b] for a, b in itertools.pairwise(bounds)]
    out, f = stream(chunks, 2)
    assert "".join(out) == whole.text
    assert f.cited == whole.cited and f.invalid == whole.invalid
    assert all(n in (1, 2) for n in f.cited)
