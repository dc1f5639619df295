"""Markdown (.md, .markdown): front matter as metadata, and the blocks the chunker needs.

A line-based parser that knows just enough CommonMark for chunk boundaries: ATX and setext
headings, fenced and indented code (kept as fenced code), lists, quotes, tables, thematic breaks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from assistant.markdown_syntax import FENCE_LINE, fence_code
from assistant.retrieval.loaders.decode import decode, with_encoding
from assistant.retrieval.loaders.document import new_doc
from assistant.retrieval.types import Block, LoadedDocument

KIND = "md"  # the document's `type` metadata (a search filter)
SUFFIXES = (".md", ".markdown")
MIME_TYPES = ("text/markdown", "text/x-markdown")

_ATX = re.compile(r"^ {0,3}(#{1,6})(?=[ \t]|$)(.*)$")
_ATX_CLOSE = re.compile(r"(?:^|[ \t]+)#+[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_HR = re.compile(r"^ {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")
_LIST_ITEM = re.compile(r"^ {0,3}(?:[-+*]|\d{1,9}[.)])(?:[ \t]+|$)")
_QUOTE = re.compile(r"^ {0,3}>")
_TABLE_ROW = re.compile(r"^ {0,3}\|")
_INDENTED = re.compile(r"^(?: {4}|\t)")
_FM_KEY = re.compile(r"^([A-Za-z_][\w-]*)[ \t]*:[ \t]*(.*)$")
_FM_ITEM = re.compile(r"^[ \t]*-[ \t]+(.*)$")
_RESERVED_META = frozenset({"type", "filename", "encoding"})


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Parse simple YAML-ish `key: value` front matter; return (fields, remaining text).

    Only flat keys, inline `[a, b]` lists and `- item` lists are understood. If the block
    between the `---` lines does not look like that, it is not front matter (a thematic break).
    """
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return {}, text
    for end in range(1, min(len(lines), 200)):
        if lines[end].strip() in ("---", "..."):
            break
    else:
        return {}, text
    fields: dict[str, Any] = {}
    key: str | None = None
    for line in lines[1:end]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        item = _FM_ITEM.match(line)
        if item and key is not None and (fields[key] == "" or isinstance(fields[key], list)):
            if fields[key] == "":
                fields[key] = []
            fields[key].append(_unquote(item.group(1)))
            continue
        match = _FM_KEY.match(line)
        if match is None:
            if key is not None and line[:1] in " \t" and isinstance(fields[key], str):
                fields[key] = f"{fields[key]} {line.strip()}".strip()  # folded continuation
                continue
            return {}, text  # not front matter after all
        key = match.group(1).lower()
        value = match.group(2).strip()
        if value.startswith("[") and value.endswith("]"):
            fields[key] = [_unquote(v) for v in value[1:-1].split(",") if v.strip()]
        else:
            fields[key] = _unquote(value)
    if isinstance(fields.get("tags"), str):
        fields["tags"] = [t.strip() for t in fields["tags"].split(",") if t.strip()]
    return fields, "\n".join(lines[end + 1 :])


def _markdown_blocks(text: str) -> list[Block]:
    """Line-based Markdown block parser: just enough CommonMark for chunk boundaries."""
    blocks: list[Block] = []
    group: list[str] = []
    group_kind = ""  # "para" | "list" | "quote" | "table"
    after_blank = True  # a blank line (or the start) precedes the current line
    list_blank = False  # a list was interrupted by a blank line and may continue

    def flush() -> None:
        nonlocal group, group_kind, list_blank
        body = "\n".join(line.rstrip() for line in group).strip("\n")
        if body.strip():
            blocks.append(Block("text", body))
        group, group_kind, list_blank = [], "", False

    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        fence = FENCE_LINE.match(line)
        if fence and not (fence.group("marker")[0] == "`" and "`" in fence.group("info")):
            flush()
            indent, marker = fence.start("marker"), fence.group("marker")
            close = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
            body: list[str] = []
            i += 1
            while i < len(lines) and not close.match(lines[i]):
                body.append(re.sub(rf"^ {{0,{indent}}}", "", lines[i]) if indent else lines[i])
                i += 1
            closed = i < len(lines)
            code = "\n".join(body)
            if code.strip():  # fences kept (closed even if the file forgot) so it renders as code
                blocks.append(Block("code", f"{marker}{fence.group('info').rstrip()}\n{code}\n{marker}"))
            i += 1 if closed else 0
            after_blank = False
            continue
        if not stripped:
            if group_kind == "list":
                list_blank = True
            else:
                flush()
            after_blank = True
            i += 1
            continue
        if list_blank:
            if _LIST_ITEM.match(line) or line[:1] in " \t":
                group.append("")  # keep the loose list together, blank line included
                list_blank = False
            else:
                flush()
        if not group and after_blank and _INDENTED.match(line):
            code_lines: list[str] = []
            while i < len(lines) and (not lines[i].strip() or _INDENTED.match(lines[i])):
                code_lines.append(re.sub(r"^(?: {4}|\t)", "", lines[i]))
                i += 1
            code = "\n".join(code_lines).strip("\n")
            if code.strip():
                blocks.append(Block("code", fence_code(code)))
            after_blank = False
            continue
        atx = _ATX.match(line)
        if atx:
            flush()
            title = _ATX_CLOSE.sub("", atx.group(2).strip()).strip()
            if title:
                blocks.append(Block("heading", title, level=len(atx.group(1))))
            after_blank = False
            i += 1
            continue
        setext = _SETEXT.match(line)
        if setext and group and group_kind == "para":
            title = " ".join(" ".join(group).split())
            level = 1 if setext.group(1)[0] == "=" else 2
            group, group_kind = [], ""
            blocks.append(Block("heading", title, level=level))
            after_blank = False
            i += 1
            continue
        if _HR.match(line):
            flush()
            after_blank = True
            i += 1
            continue
        if _LIST_ITEM.match(line):
            kind = "list"
        elif _QUOTE.match(line):
            kind = "quote"
        elif _TABLE_ROW.match(line):
            kind = "table"
        else:
            kind = "para"
        if not group:
            group_kind = kind
        elif kind == "list" and group_kind == "para":
            group_kind = "list"  # "Intro:\n- a\n- b" stays one block, and cannot be a setext title
        group.append(line)
        after_blank = False
        i += 1
    flush()
    return blocks


def load(path: Path, raw: bytes) -> LoadedDocument:
    """Title: the first H1, else the front matter's; other front-matter fields become metadata."""
    text, encoding = decode(path, raw)
    fields, body = _front_matter(text)
    blocks = _markdown_blocks(body)
    h1 = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), "")
    fm_title = fields.get("title") if isinstance(fields.get("title"), str) else ""
    extra = {k: v for k, v in fields.items() if k not in _RESERVED_META}
    extra.update(with_encoding(encoding))
    doc = new_doc(path, raw, KIND, h1 or fm_title or "", blocks, extra)
    url = fields.get("url")
    if isinstance(url, str) and url.strip():
        doc.url = url.strip()
    return doc
