"""A chunk's text as blocks a reader recognises: paragraphs, lists, code, tables, headings.

The retrieval-only answer shows a passage's most relevant part with its structure intact (steps
in order, a code block whole, a table as a table), so it needs the chunk in those units rather
than as loose sentences. Chunk text is Markdown-ish: Markdown files keep their syntax, and the
HTML and PDF loaders write paragraphs, list items and fenced code the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from assistant.markdown_syntax import FENCE_LINE

_HEADING = re.compile(r"^ {0,3}#{1,6}(\s|$)")
_LIST_ITEM = re.compile(r"^\s{0,6}(?:[-*+\u2022]|\d{1,3}[.)])\s+\S")
_TABLE_RULE = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\((?:[^()\s]|\([^()\s]*\))*\)")
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_MARKS = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_PERMALINK = re.compile(r"\s*\u00b6\s*$")  # Sphinx's "¶" after headings and definitions: a link, not text


@dataclass
class Block:
    """One unit of a chunk: `kind` is para, list, code, table or heading; `lines` are as written."""

    kind: str
    lines: list[str]

    @property
    def markdown(self) -> str:
        return "\n".join(self.lines)

    @property
    def plain(self) -> str:
        """The words a reader sees (for matching): Markdown syntax and link targets removed."""
        if self.kind == "code":
            return " ".join(line for line in self.lines[1:] if not FENCE_LINE.match(line))
        text = " ".join(line.strip() for line in self.lines)
        if self.kind == "table":
            text = " ".join(c for c in re.split(r"\s*\|\s*", text) if c and not set(c) <= set("-: "))
        return plain_text(text)

    @property
    def chars(self) -> int:
        return sum(len(line) for line in self.lines)


def plain_text(text: str) -> str:
    """Inline Markdown reduced to what it shows: link text, image alt text, no emphasis marks."""
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _MARKS.sub(r"\2", text)
    text = re.sub(r"^\s*(?:[-*+\u2022]|\d{1,3}[.)])\s+", "", text)
    text = re.sub(r"^\s*#{1,6}\s+", "", text)
    return " ".join(text.split())


def without_link_targets(line: str) -> str:
    """`[text](url)` as `text` (outside code spans): the answer quotes words, the source panel links."""
    out, pos = [], 0
    for m in _CODE_SPAN.finditer(line):
        out.append(_IMAGE.sub(r"\1", _LINK.sub(r"\1", line[pos:m.start()])))
        out.append(m.group(0))
        pos = m.end()
    out.append(_IMAGE.sub(r"\1", _LINK.sub(r"\1", line[pos:])))
    return "".join(out)


def split_blocks(text: str) -> list[Block]:
    """The blocks of a chunk, in order. An unclosed fence (a chunk cut inside code) runs to the end."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks: list[Block] = []
    current: Block | None = None

    def close() -> None:
        nonlocal current
        if current is not None and any(line.strip() for line in current.lines):
            blocks.append(current)
        current = None

    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE_LINE.match(line)
        if fence:
            close()
            opener = fence.group(1)
            code = [line]
            i += 1
            while i < len(lines):
                end = FENCE_LINE.match(lines[i])
                code.append(lines[i])
                i += 1
                if end and end.group(1)[0] == opener[0] and len(end.group(1)) >= len(opener) \
                        and not end.group(2).strip():
                    break
            blocks.append(Block("code", code))
            continue
        line = _PERMALINK.sub("", line)
        stripped = line.strip()
        i += 1
        if not stripped:
            if current is not None and current.kind != "list":
                close()
            elif current is not None:  # a blank line inside a list ends it unless an item follows
                nxt = next((ln for ln in lines[i:] if ln.strip()), "")
                if not _LIST_ITEM.match(nxt):
                    close()
            continue
        if _HEADING.match(line):
            close()
            blocks.append(Block("heading", [stripped]))
            continue
        is_row = stripped.startswith("|") or (stripped.count("|") >= 2 and current is not None
                                              and current.kind == "table")
        if is_row or (_TABLE_RULE.match(stripped) and "|" in stripped):
            if current is None or current.kind != "table":
                previous = current.lines[-1] if current is not None and current.kind == "para" else None
                if previous is not None and _TABLE_RULE.match(stripped) and "|" in previous:
                    current.lines.pop()  # the header row was read as a paragraph line
                    close()
                    current = Block("table", [previous])
                else:
                    close()
                    current = Block("table", [])
            current.lines.append(stripped)
            continue
        if _LIST_ITEM.match(line):
            if current is None or current.kind != "list":
                close()
                current = Block("list", [])
            current.lines.append(line.rstrip())
            continue
        if current is not None and current.kind == "list":
            current.lines.append(line.rstrip())  # a wrapped item continues
            continue
        if current is None or current.kind != "para":
            close()
            current = Block("para", [])
        current.lines.append(stripped)
    close()
    return blocks
