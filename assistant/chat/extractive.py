"""Answers without a language model: the few sentences from the top sources that best match.

Used when no LLM is configured (the default, offline deployment) and when the LLM fails before
sending anything. The aim is an answer that reads like prose, not a dump of chunks: chunk text is
cleaned of Markdown structure (headings, code blocks, tables, list markers, link syntax), split
into sentences, and each sentence is scored by how much of the query it covers (terms weighted
by rarity among the candidates) plus a bonus for the source's rank. The best 2-4 sentences,
without near-duplicates, are shown in reading order grouped by source, each with its `[n]`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

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
    one ones thing things way ways something anything""".split()
)

_TABLE_RULE = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?$")
_CELL_SENTENCE = re.compile(r"[.]\s+(?=[A-Z])")  # a cell's sentences become clauses of one line
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}#{1,6}(\s|$)")
_SETEXT = re.compile(r"^\s*(=+|-+)\s*$")
_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$")
_LIST = re.compile(r"^\s*(?:[-*+\u2022]|\d{1,3}[.)])\s+")
_QUOTE = re.compile(r"^\s*(?:>\s?)+")
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_TAG = re.compile(r"</?[A-Za-z][^>]{0,200}>")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_CITE_LIKE = re.compile(r"\[\d+(?:\s*[,;-]\s*\d+)*\]")
_HYPHEN_BREAK = re.compile(r"(\w)-\n(\w)")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)  # LLM_MODEL -> llm, model
_SENT_END = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s+")
_ABBREV = frozenset("e.g i.e etc vs mr mrs ms dr no fig approx cf al st inc ltd jr sr".split())

_LEANS_BACK = frozenset("it its this that these those they them then so but also not yes no however".split())
MAX_SENTENCE_CHARS = 400
TOP_CHUNKS = 3
# "How do I ...?" wants the steps in order, not the sentences that repeat the question's words:
# for such questions the best chunk's opening sentences (usually the procedure) are preferred.
_HOW_TO = re.compile(r"^\s*(how|what steps|wie|comment|c[oó]mo|come|como)\b", re.IGNORECASE)


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


def clean_units(text: str) -> list[str]:
    """Prose units of a chunk: paragraphs and list items with Markdown structure removed."""
    text = _HYPHEN_BREAK.sub(r"\1\2", text.replace("\r\n", "\n"))
    units: list[str] = []
    para: list[str] = []
    in_fence = False
    code: list[str] = []
    intro = False  # the fence follows a unit ending with ":" ("Install it with:")
    open_unit = False  # the last unit was closed only by blank lines, so a fence may attach to it
    table: list[list[str]] = []  # [header] while inside a table with a header row

    def end_para() -> None:
        nonlocal open_unit
        if para:
            units.append(" ".join(para))
            para.clear()
            open_unit = True

    for raw in text.split("\n"):
        if _FENCE.match(raw):
            if not in_fence:
                end_para()
                intro = open_unit and units[-1].endswith(":")
                code = []
            else:
                inline = _inline_commands(code) if intro else ""
                if inline:
                    units[-1] = f"{units[-1]} {inline}"
                intro = open_unit = False
            in_fence = not in_fence
            continue
        if in_fence:
            code.append(raw)
            continue
        line = raw.strip()
        if not line:
            end_para()
            continue
        if _HEADING.match(line) or _RULE.match(line) or (_SETEXT.match(line) and para):
            if _SETEXT.match(line) and para:
                para.clear()  # the paragraph was a setext heading
            end_para()
            open_unit = False
            continue
        if line.startswith("|") or line.count("|") >= 2:
            end_para()
            open_unit = False
            cells = _cells(line)
            if _TABLE_RULE.match(line):
                header = table[-1] if table else []  # the row above the rule was the header
                table = [header]
            elif table and table[0] and len(cells) == len(table[0]):
                row = _table_row(table[0], cells)
                if row:
                    units.append(row)
            else:
                table = [cells]
            continue
        table = []
        open_unit = False
        line = _QUOTE.sub("", line)
        if _LIST.match(line):
            end_para()
            open_unit = False
            line = _LIST.sub("", line)
        line = _IMAGE.sub("", line)
        line = _LINK.sub(r"\1", line)
        line = _TAG.sub("", line)
        line = _BOLD.sub(r"\2", line)
        line = _CITE_LIKE.sub("", line)
        line = " ".join(line.split())
        if line:
            para.append(line)
    end_para()
    return units


def _inline_commands(lines: list[str], max_lines: int = 3, max_chars: int = 160) -> str:
    """A short code block (a command or three) as inline code; "" when it is longer than that."""
    cmds = [re.sub(r"\s+#\s.*$", "", ln).strip() for ln in lines]
    cmds = [c for c in cmds if c and not c.startswith("#")]
    if not cmds or len(cmds) > max_lines or any("`" in c for c in cmds) or sum(map(len, cmds)) > max_chars:
        return ""
    return ", ".join(f"`{c}`" for c in cmds)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table_row(header: list[str], cells: list[str]) -> str:
    """A table row as one readable line: "`LLM_MODEL` (default: `gpt-4o-mini`; meaning: chat model name)."."""
    key = cells[0]
    rest = [
        f"{h}: {_CELL_SENTENCE.sub('; ', c).rstrip('.')}" if h else c
        for h, c in zip(header[1:], cells[1:], strict=False)
        if c
    ]
    if not key or not rest:
        return ""
    return f"{key} ({'; '.join(rest)})."


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
class _Candidate:
    text: str
    source: int  # 1-based source number
    position: int  # order within its chunk
    terms: set[str]
    coverage: float = 0.0  # weighted share of the query's terms in this sentence
    score: float = 0.0


@dataclass
class ExtractiveAnswer:
    """Text to show (label line included) and the source numbers it cites, in order."""

    text: str
    cited: list[int] = field(default_factory=list)


def _readable(sentence: str) -> str | None:
    """The sentence fit to show, or None when it would read badly out of context."""
    s = sentence.strip().strip("*_ ")
    words = s.split()
    if len(words) < 4 or not any(c.isalpha() for c in s) or s.endswith((":", ",", ";")):
        return None
    if len(s) > MAX_SENTENCE_CHARS:
        cut = s[:MAX_SENTENCE_CHARS].rsplit(" ", 1)[0].rstrip(",;:")
        s = cut + "\u2026"
    if s[0].islower():
        s = s[0].upper() + s[1:]
    if s[-1] not in ".!?\u2026\"')":
        s += "."
    return s


def _with_citation(sentence: str, number: int) -> str:
    """`sentence [n].` reads better than `sentence. [n]`; other endings get the marker after."""
    if sentence.endswith(".") and not sentence.endswith(".."):
        return f"{sentence[:-1]} [{number}]."
    return f"{sentence} [{number}]"


def extract(query: str, hits: list[Hit], *, max_sentences: int = 4, min_sentences: int = 2) -> ExtractiveAnswer:
    """Pick the best sentences for `query` from the top hits (hits[i] is source [i+1]); no label."""
    candidates: list[_Candidate] = []
    seen_text: set[str] = set()
    for number, hit in enumerate(hits[:TOP_CHUNKS], start=1):
        position = 0
        for unit in clean_units(hit.text):
            for raw in split_sentences(unit):
                sentence = _readable(raw)
                if sentence is None:
                    continue
                norm = " ".join(terms(sentence)) or sentence.lower()
                if norm in seen_text:
                    continue
                seen_text.add(norm)
                candidates.append(_Candidate(sentence, number, position, set(terms(sentence))))
                position += 1
    if not candidates:
        return ExtractiveAnswer("")

    query_terms = list(dict.fromkeys(terms(query)))
    how_to = bool(_HOW_TO.match(query))
    n = len(candidates)
    idf = {t: math.log(1 + n / (1 + sum(t in c.terms for c in candidates))) + 0.1 for t in query_terms}
    total = sum(idf.values()) or 1.0
    for c in candidates:
        hit = hits[c.source - 1]
        c.coverage = sum(idf[t] for t in query_terms if t in c.terms) / total
        heading = set(terms(" ".join([hit.title, *hit.heading_path])))
        context = sum(idf[t] for t in query_terms if t in heading and t not in c.terms) / total
        c.score = c.coverage + 0.15 * context + 0.1 / c.source + (0.03 if c.position == 0 else 0.0)
        if len(c.text.split()) < 7:
            c.score -= 0.05
        if c.text.split()[0].lower().strip(",.") in _LEANS_BACK:
            c.score -= 0.15  # "It ...", "Not with ..." need the sentence before them
        if c.text.endswith("?"):
            c.score -= 0.5  # a question in the text (an FAQ heading, an example) answers nothing

    # Sentences that share a term with the query come first; if fewer than min_sentences do,
    # their neighbours (context that reads on) fill up, then the best of the rest.
    matched = [c for c in candidates if c.coverage > 0]
    pool = matched or candidates
    chosen: list[_Candidate] = []
    best = max(c.score for c in pool)

    def take(c: _Candidate) -> bool:
        if c in chosen or any(_similar(c.terms, o.terms) for o in chosen):
            return False
        chosen.append(c)
        return True

    if how_to:  # the best passage's opening steps, in order, even where they don't echo the question
        for c in [c for c in candidates if c.source == 1 and c.position < 3][: max(1, max_sentences - 1)]:
            take(c)
    for c in sorted(pool, key=lambda c: (-c.score, c.source, c.position)):
        if len(chosen) >= max_sentences or (len(chosen) >= min_sentences and c.score < 0.6 * best):
            break
        take(c)
    by_place = {(c.source, c.position): c for c in candidates}
    for c in list(chosen):
        for step in (1, -1):
            neighbour = by_place.get((c.source, c.position + step))
            if len(chosen) < min_sentences and neighbour is not None:
                take(neighbour)
    for c in sorted(candidates, key=lambda c: (-c.score, c.source, c.position)):
        if len(chosen) >= min_sentences:
            break
        take(c)

    chosen.sort(key=lambda c: (c.source, c.position))
    paragraphs: list[str] = []
    cited: list[int] = []
    for c in chosen:
        piece = _with_citation(c.text, c.source)
        if cited and cited[-1] == c.source:
            paragraphs[-1] += " " + piece
        else:
            paragraphs.append(piece)
        if c.source not in cited:
            cited.append(c.source)
    return ExtractiveAnswer("\n\n".join(paragraphs), cited)


def _similar(a: set[str], b: set[str]) -> bool:
    if not a or not b:
        return False
    return len(a & b) / len(a | b) >= 0.6


def extractive_answer(
    query: str, hits: list[Hit], *, compact: bool = False, llm_failed: bool = False
) -> ExtractiveAnswer:
    """The full retrieval-only answer: a label line, then 2-4 cited sentences (2 in the widget)."""
    picked = extract(query, hits, max_sentences=2 if compact else 4, min_sentences=2)
    label = LABEL_LLM_DOWN if llm_failed else LABEL_NO_LLM
    if not picked.text:
        titles = ", ".join(dict.fromkeys(f'"{h.title}"' for h in hits[:TOP_CHUNKS] if h.title))
        body = f"The closest passages are in {titles}; open the sources below to read them." if titles else ""
        return ExtractiveAnswer(f"{label}\n\n{body}".rstrip(), [])
    return ExtractiveAnswer(f"{label}\n\n{picked.text}", picked.cited)
