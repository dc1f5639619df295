"""Where the chunker may cut text too big for one chunk: sentences, lines, words, as (start, end)
spans into the text, so a piece keeps its original whitespace and line breaks."""

from __future__ import annotations

import re

Span = tuple[int, int]

# Sentence ends, and line breaks that are structural (before a list item, table row or quote, or
# after a table row); a hard-wrapped line inside a sentence is not a break.
_SENTENCE_BREAK = re.compile(
    r"[.!?…]+[\"'”’)\]]*(?=\s)|[。！？]+[”’」』)]*"
    r"|\n(?=[ \t]*(?:[-+*•][ \t]|\d{1,9}[.)][ \t]|[|>]))|(?<=\|)[ \t]*\n"
)
_WORD = re.compile(r"\S+")


def sentence_spans(text: str, start: int, end: int) -> list[Span]:
    """Sentences (and lines) of text[start:end] as trimmed spans, in order."""
    spans: list[Span] = []
    pos = start
    for match in _SENTENCE_BREAK.finditer(text, start, end):
        newline = not match.group().strip()
        add_trimmed(spans, text, pos, match.start() if newline else match.end())
        pos = match.end()
    add_trimmed(spans, text, pos, end)
    return spans


def line_spans(text: str, start: int, end: int) -> list[Span]:
    """Lines of text[start:end] as trimmed spans, in order."""
    spans: list[Span] = []
    pos = start
    while pos < end:
        nl = text.find("\n", pos, end)
        stop = end if nl < 0 else nl
        add_trimmed(spans, text, pos, stop)
        pos = stop + 1
    return spans


def word_spans(text: str, start: int, end: int) -> list[Span]:
    """Words (runs of non-space) of text[start:end]."""
    return [m.span() for m in _WORD.finditer(text, start, end)]


def add_trimmed(spans: list[Span], text: str, start: int, end: int) -> None:
    """Append text[start:end] without its surrounding whitespace, unless nothing is left."""
    piece = text[start:end]
    stripped = piece.strip()
    if stripped:
        s = start + (len(piece) - len(piece.lstrip()))
        spans.append((s, s + len(stripped)))


# How text too big for one chunk is split, coarsest first (characters come last, always).
TEXT_LEVELS = (sentence_spans, line_spans, word_spans)
