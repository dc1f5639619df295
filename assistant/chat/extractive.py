"""Answers without a language model, built on the passage retrieval ranked first.

Used when no LLM is configured (the default, offline deployment) and when the LLM fails before
sending anything. A reader should get what a person pointing at the documentation would give:

1. The lead passage: the one retrieval put first, unless a passage ranked just below it is
   clearly about the question: its section heading names what was asked and the first one's does
   not, or (the second only, when the first's heading does not name the question) it is more
   similar to the question and its text holds at least twice as much of the question's weight.
   A lower-ranked passage that merely shares words never leads.
2. Its most relevant part, as written: the best-matching paragraph with the code block, list or
   table it introduces (a paragraph ending in ":" keeps what follows), or, for "how do I"
   questions, the steps from the start of the section, in order. Code, lists and tables keep
   their shape; all document text is escaped so `[1]`, `<tags>` and Markdown show as written.
3. At most two supporting passages (one sentence each, each cited), only when they match the
   question well and say something the lead does not.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from assistant.chat.blocks import Block, plain_text, split_blocks, without_link_targets
from assistant.literal_markdown import (
    code_block,
    escape_inline,
    guard_refs_in_code,
    inline_literal,
    is_table,
    literal_table,
)
from assistant.markdown_syntax import FENCE_LINE
from assistant.retrieval.types import Hit

_LABEL = "*Retrieval-only answer ({why}): the most relevant passages from your documents.*"
LABEL_NO_LLM = _LABEL.format(why="no language model configured")
LABEL_LLM_DOWN = _LABEL.format(why="the language model is unavailable")

STOPWORDS = frozenset(
    """a an the and or but if then else of to in on at by for with from into onto about as is are was were be been
    being am do does did doing have has had having i me my we our you your he she it its they them their this that
    these those there here what which who whom whose when where why how can could should would will shall may might
    must not no yes so too very just also than any all each some such only own same other more most few both
    again further once up down out off over under via per please tell explain show know want need like get
    one ones thing things way ways something anything much many""".split()
)

_WORD = re.compile(r"[^\W_]+", re.UNICODE)  # LLM_MODEL -> llm, model
_SENT_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s+")
_ABBREV = frozenset("e.g i.e etc vs mr mrs ms dr no fig approx cf al st inc ltd jr sr".split())
_LIST_MARK = re.compile(r"^(\s*)([-*+\u2022]|\d{1,3}[.)])\s+(.*)$")
# "How do I ...?" wants the steps in order from the start of the section, not only the
# sentences that repeat the question's words.
_HOW_TO = re.compile(r"^\s*(how|what steps|wie|comment|c[oó]mo|come|como)\b", re.IGNORECASE)

LEAD_WINDOW = 4  # passages that may take the lead from the first one (ranks 1-4)
SUPPORT_WINDOW = 5  # passages considered for support
MAX_SUPPORT = 2
SUPPORT_MIN_COVERAGE = 0.67  # a supporting sentence holds two thirds of the question's weight, and its rarest word
BUDGET_CHARS = 900  # the lead excerpt's text (code lines count too)
COMPACT_BUDGET_CHARS = 420  # the widget
MIN_CHARS = 260  # an excerpt shorter than this takes the next block too
MAX_CODE_LINES = 16
MAX_LIST_ITEMS = 10
MAX_TABLE_ROWS = 10
MAX_SENTENCE_CHARS = 400
CODE_WEIGHT = 0.6  # code matches the question's words less reliably than prose


def stem(word: str) -> str:
    """A light suffix strip so "install", "installs", "installing", "installed" meet (as do
    "configure", "configured", "configuration"); crude, but the same on both sides of a match."""
    w = word
    if len(w) > 4:
        if w.endswith("ies"):
            w = w[:-3] + "y"
        elif w.endswith(("sses", "shes", "ches", "xes", "zes")):
            w = w[:-2]
        elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
            w = w[:-1]
    for suffix in ("ations", "ation", "ing", "ed"):
        if len(w) > len(suffix) + 3 and w.endswith(suffix):
            w = w[: -len(suffix)]
            if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "lsz":
                w = w[:-1]  # running -> run
            break
    if len(w) > 4 and w.endswith("e"):
        w = w[:-1]
    return w


def terms(text: str) -> list[str]:
    """Content words of `text`, lower-cased and lightly stemmed, in order."""
    return [stem(w) for w in (m.group(0).lower() for m in _WORD.finditer(text)) if w not in STOPWORDS and len(w) > 1]


def key_terms(text: str, limit: int = 8) -> list[str]:
    """Content words of `text` as written (not stemmed), first occurrences, for query rewriting."""
    out: list[str] = []
    seen: set[str] = set()
    for m in re.finditer(r"[\w][\w\-./]*\w|\w", text, re.UNICODE):
        word = m.group(0)
        low = word.lower()
        if low in STOPWORDS or len(word) < 2 or stem(low) in seen:
            continue
        seen.add(stem(low))
        out.append(word)
        if len(out) >= limit:
            break
    return out


def split_sentences(unit: str) -> list[str]:
    """Sentences of one paragraph; does not split after "e.g.", initials or version numbers."""
    out: list[str] = []
    start = 0
    for m in _SENT_END.finditer(unit):
        end = m.end()
        rest = unit[end:end + 1]
        before = unit[start:m.start()].split()
        last = before[-1].lower().rstrip(".") if before else ""
        if not rest or rest.islower() or last in _ABBREV or (len(last) == 1 and last.isalpha()):
            continue
        out.append(unit[start:end].strip())
        start = end
    tail = unit[start:].strip()
    if tail:
        out.append(tail)
    return out


@dataclass
class ExtractiveAnswer:
    """Text to show (label line included) and the source numbers it cites, lead first."""

    text: str
    cited: list[int] = field(default_factory=list)


@dataclass
class _Passage:
    number: int  # the source number [n]
    hit: Hit
    blocks: list[Block]
    block_terms: list[set[str]]
    heading_terms: set[str]  # the document title and section headings

    @property
    def body_terms(self) -> set[str]:
        return set().union(*self.block_terms) if self.block_terms else set()


class _Query:
    """The question's content words, weighted by how rare they are among the candidate blocks."""

    def __init__(self, query: str, passages: list[_Passage]) -> None:
        self.terms = list(dict.fromkeys(terms(query)))
        units = [t for p in passages for t in p.block_terms] or [set()]
        n = len(units)
        self.idf = {t: math.log(1 + n / (1 + sum(t in u for u in units))) + 0.1 for t in self.terms}
        self.total = sum(self.idf.values()) or 1.0
        self.key = max(self.terms, key=lambda t: self.idf[t]) if self.terms else ""  # its rarest word

    def coverage(self, words: set[str]) -> float:
        """Weighted share of the question's words found in `words` (0 when it has none)."""
        return sum(self.idf[t] for t in self.terms if t in words) / self.total if self.terms else 0.0


def _passage(number: int, hit: Hit) -> _Passage:
    blocks = split_blocks(hit.text)
    return _Passage(number, hit, blocks, [set(terms(b.plain)) for b in blocks],
                    set(terms(" ".join([hit.title or "", *hit.heading_path]))))


def choose_lead(q: _Query, passages: list[_Passage]) -> int:
    """Index of the lead passage: the first, unless one ranked just below is clearly about the
    question: its headings cover at least half of the question's weight and a third more than the
    first's (a section named for what was asked, below one named for something else)."""
    first = passages[0]
    base = q.coverage(first.heading_terms)
    lead, lead_cov = 0, base
    for i, p in enumerate(passages[1:LEAD_WINDOW], start=1):
        cov = q.coverage(p.heading_terms)
        if cov >= 0.5 and cov - base >= 0.34 and cov > lead_cov:
            lead, lead_cov = i, cov
    if lead == 0 and len(passages) > 1:  # or the second, when it is more similar and its text says much more
        second, body = passages[1], q.coverage(first.body_terms)
        sims = (first.hit.similarity, second.hit.similarity)
        named = base >= 0.34 or q.coverage(second.heading_terms) < base - 0.1  # the first's section fits better
        if None not in sims and sims[1] >= sims[0] and not named \
                and q.coverage(second.body_terms) >= max(2 * body, body + 0.15):
            lead = 1
    return lead


def _dangling(block: Block, before: Block) -> bool:
    """A short line that is no sentence and not introduced by the block before (a cut-off signature)."""
    return block.kind == "para" and block.chars < 80 and not block.plain.endswith((".", "!", "?", ":")) \
        and not before.plain.endswith(":")


def _section_start(blocks: list[Block], i: int) -> int:
    while i > 0 and blocks[i - 1].kind != "heading":
        i -= 1
    return i


def _window(q: _Query, p: _Passage, how_to: bool, budget: int) -> list[Block]:
    """The blocks to show from the lead passage (see the module docstring)."""
    blocks = p.blocks
    shown = [i for i, b in enumerate(blocks) if b.kind != "heading"]
    if not shown:
        return blocks[:1]
    cov = {i: q.coverage(p.block_terms[i]) * (CODE_WEIGHT if blocks[i].kind == "code" else 1.0) for i in shown}
    best = max(shown, key=lambda i: (cov[i], -i))
    if sum(b.chars for b in blocks) <= budget:  # a short passage is shown whole: its order is the author's
        end = len(blocks)
        while end - 1 > best and _dangling(blocks[end - 1], blocks[end - 2]) \
                and not p.block_terms[end - 1] & set(q.terms):
            end -= 1  # but not a dangling line the chunker cut from what follows (the next signature)
        return blocks[:end]
    start = best
    if how_to or cov[best] == 0:
        first = _section_start(blocks, best)
        if sum(b.chars for b in blocks[first:best + 1]) <= budget:
            start = first
    if start == best and start > 0 and blocks[start - 1].kind != "heading" and (
            blocks[start].kind in ("code", "table", "list") or blocks[start - 1].plain.endswith(":")):
        start -= 1  # the paragraph that introduces it
    if start > 0 and blocks[start - 1].kind == "heading":
        start -= 1  # a sub-heading inside the passage says what follows
    chosen = blocks[start:best + 1]
    chars = sum(b.chars for b in chosen)
    end = best + 1
    while end < len(blocks):
        nxt, last = blocks[end], blocks[end - 1]
        if nxt.kind == "heading":
            break
        introduces = last.kind == "para" and last.plain.endswith(":")
        fits = chars + nxt.chars <= budget
        if introduces or (fits and (chars < MIN_CHARS or (how_to and nxt.kind in ("code", "list")))):
            chosen.append(nxt)
            chars += nxt.chars
            end += 1
        else:
            break
    return chosen


def _items(lines: list[str]) -> list[tuple[str, str]]:
    """(marker, text) per list item; wrapped lines join their item."""
    items: list[tuple[str, str]] = []
    for line in lines:
        m = _LIST_MARK.match(line)
        if m:
            marker = m.group(2) if m.group(2)[0].isdigit() else "-"
            items.append((marker, m.group(3).strip()))
        elif items:
            items[-1] = (items[-1][0], f"{items[-1][1]} {line.strip()}")
    return items


def _render_list(lines: list[str], q: _Query) -> str:
    items = _items(lines)
    out = []
    for marker, text in items[:MAX_LIST_ITEMS]:
        mark = (marker[:-1] + ". ") if marker[0].isdigit() else "- "
        out.append(mark + inline_literal(without_link_targets(text)))
    if len(items) > MAX_LIST_ITEMS:
        out.append("- \u2026")
    return "\n".join(out)


def _render_code(lines: list[str]) -> str:
    opener = FENCE_LINE.match(lines[0])
    info = opener.group(2) if opener else ""
    body = lines[1:]
    if body and FENCE_LINE.match(body[-1]) and not FENCE_LINE.match(body[-1]).group(2).strip():
        body = body[:-1]
    while body and not body[-1].strip():
        body = body[:-1]
    if len(body) > MAX_CODE_LINES:
        body = [*body[:MAX_CODE_LINES], "\u2026"]
    return code_block(body, info)


def _render_table(lines: list[str], q: _Query) -> str:
    if not is_table(lines):
        return "\n\n".join(inline_literal(line) for line in lines)
    head, rows = lines[:2], lines[2:]
    if len(rows) > MAX_TABLE_ROWS:  # the rows that match the question, in order
        matching = [r for r in rows if q.coverage(set(terms(plain_text(r.replace("|", " "))))) > 0]
        rows = [*(matching or rows)[:MAX_TABLE_ROWS], "| \u2026 |"]
    return "\n".join(literal_table(head + rows))


def _render_para(lines: list[str], q: _Query, budget: int, from_start: bool) -> str:
    text = without_link_targets(" ".join(line.strip() for line in lines))
    if len(text) <= budget:
        return inline_literal(text)
    sentences = split_sentences(text)
    scores = [q.coverage(set(terms(plain_text(s)))) for s in sentences]
    first = 0 if from_start else max(range(len(sentences)), key=lambda i: (scores[i], -i))
    picked, size = [], 0
    for s in sentences[first:]:
        if picked and size + len(s) > budget:
            break
        picked.append(s if len(s) <= budget else s[:budget].rsplit(" ", 1)[0] + " \u2026")
        size += len(s)
    shown = " ".join(picked)
    cut_after = first + len(picked) < len(sentences)
    return ("\u2026 " if first else "") + inline_literal(shown) + (" \u2026" if cut_after else "")


def _render(blocks: list[Block], q: _Query, budget: int, how_to: bool) -> str:
    out = []
    for b in blocks:
        if b.kind == "heading":
            out.append("**" + escape_inline(b.plain) + "**")
        elif b.kind == "code":
            out.append(_render_code(b.lines))
        elif b.kind == "list":
            out.append(_render_list(b.lines, q))
        elif b.kind == "table":
            out.append(_render_table(b.lines, q))
        else:
            out.append(_render_para(b.lines, q, budget, from_start=how_to))
    return "\n\n".join(out)


def where(hit: Hit) -> str:
    """`Title › Section` (escaped) naming a passage in the answer."""
    sections = [h.rstrip(" \u00b6") for h in hit.heading_path if h]
    if sections and hit.title and f"{hit.title.strip().lower()} ".startswith(f"{sections[0].strip().lower()} "):
        sections = sections[1:]  # the page's own H1 repeats its title
    name = (hit.title or hit.source.replace("\\", "/").rsplit("/", 1)[-1]).rstrip(" \u00b6")
    text = " \u203a ".join([name, *sections[-2:]])
    if hit.page:
        text += f", page {hit.page}"
    return escape_inline(text, 120)


def _support(q: _Query, passages: list[_Passage], lead: int, shown: set[str], limit: int) -> list[tuple[int, str]]:
    """(number, sentence) for up to `limit` other passages that match the question well and add to the lead."""
    found: list[tuple[float, int, str]] = []
    for i, p in enumerate(passages[:SUPPORT_WINDOW]):
        if i == lead or limit <= 0:
            continue
        heading = q.coverage(p.heading_terms)
        best: tuple[float, str] | None = None
        names_key = q.key in p.heading_terms
        if heading == 0:
            continue  # its section is about something else
        for block in p.blocks:
            if block.kind not in ("para", "list"):
                continue
            units = [t for _, t in _items(block.lines)] if block.kind == "list" else [" ".join(block.lines)]
            for unit in units:
                for sentence in split_sentences(without_link_targets(unit)):
                    words = set(terms(plain_text(sentence)))
                    if len(sentence.split()) < 6 or "?" in sentence or len(words - shown) < 2:
                        continue
                    if words and len(words & shown) / len(words) > 0.6:
                        continue  # says what the lead already says
                    cov = q.coverage(words)
                    if cov < SUPPORT_MIN_COVERAGE or not (names_key or q.key in words):
                        continue
                    if best is None or cov > best[0]:
                        best = (cov, sentence)
        if best is not None:
            found.append((best[0] + 0.5 * heading, p.number, best[1]))
    found.sort(key=lambda t: -t[0])
    return sorted(((n, _sentence(s)) for _, n, s in found[:limit]), key=lambda t: t[0])


def _sentence(text: str) -> str:
    s = " ".join(text.split())
    if len(s) > MAX_SENTENCE_CHARS:
        s = s[:MAX_SENTENCE_CHARS].rsplit(" ", 1)[0].rstrip(",;:") + " \u2026"
    return inline_literal(s[0].upper() + s[1:] if s[:1].islower() else s)


def extract(query: str, hits: list[Hit], *, compact: bool = False) -> ExtractiveAnswer:
    """The answer body for `query` from the hits (hits[i] is source [i+1]); no label."""
    passages = [_passage(n, h) for n, h in enumerate(hits[:max(LEAD_WINDOW, SUPPORT_WINDOW)], start=1)]
    passages = [p for p in passages if p.blocks]
    if not passages:
        return ExtractiveAnswer("")
    q = _Query(query, passages)
    how_to = bool(_HOW_TO.match(query))
    lead_i = choose_lead(q, passages)
    lead = passages[lead_i]
    budget = COMPACT_BUDGET_CHARS if compact else BUDGET_CHARS
    blocks = _window(q, lead, how_to, budget)
    body = _render(blocks, q, budget, how_to)
    parts = [f"**{where(lead.hit)}** [{lead.number}]", body]
    cited = [lead.number]
    shown = set().union(*(set(terms(b.plain)) for b in blocks))
    support = _support(q, passages, lead_i, shown, 0 if compact else MAX_SUPPORT)
    if support:
        parts.append("*Also relevant:*")
        for number, sentence in support:
            parts.append(f"**{where(hits[number - 1])}** [{number}]: {sentence}")
            cited.append(number)
    text = "\n\n".join(parts)
    return ExtractiveAnswer(text if compact else guard_refs_in_code(text), cited)


def extractive_answer(
    query: str, hits: list[Hit], *, compact: bool = False, llm_failed: bool = False
) -> ExtractiveAnswer:
    """The full retrieval-only answer: a label line, the lead passage's best part, then support."""
    picked = extract(query, hits, compact=compact)
    label = LABEL_LLM_DOWN if llm_failed else LABEL_NO_LLM
    if not picked.text:
        titles = ", ".join(dict.fromkeys(f'"{h.title}"' for h in hits[:3] if h.title))
        body = f"The closest passages are in {titles}; open the sources below to read them." if titles else ""
        return ExtractiveAnswer(f"{label}\n\n{body}".rstrip(), [])
    return ExtractiveAnswer(f"{label}\n\n{picked.text}", picked.cited)
