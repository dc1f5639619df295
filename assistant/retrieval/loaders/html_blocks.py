"""HTML to structural blocks: headings with levels, fenced code, tables as rows, lists with markers.

A streaming walker over the standard library's HTMLParser, tolerant of unclosed tags the way
browsers are. It keeps structure only; which parts of a page are main content is decided before,
in `html_content`. It also drops the elements that are never content (scripts, styles, forms, a
page-level <header>/<nav>/<footer>/<aside>), so it is safe on its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

from assistant.markdown_syntax import fence_code
from assistant.retrieval.types import Block, BlockKind

_DROP_TAGS = frozenset({"script", "style", "nav", "header", "footer", "aside", "noscript", "form", "svg", "template"})
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
)
_BLOCK_TAGS = frozenset(
    {
        "p",
        "div",
        "li",
        "td",
        "th",
        "tr",
        "blockquote",
        "section",
        "article",
        "main",
        "ul",
        "ol",
        "table",
        "dl",
        "dt",
        "dd",
        "figure",
        "figcaption",
        "body",
        "html",
        "br",
        "hr",
        "caption",
        "details",
        "summary",
        "address",
        "tbody",
        "thead",
        "tfoot",
        "center",
    }
)
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_GROUP_TAGS = frozenset({"ul", "ol", "table"})  # their rows/items become one text block
# Start tag -> (open tags it implicitly closes, tags that bound the search), as browsers do.
_IMPLIED_CLOSE: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "li": (frozenset({"li"}), frozenset({"ul", "ol"})),
    "td": (frozenset({"td", "th"}), frozenset({"tr", "table"})),
    "th": (frozenset({"td", "th"}), frozenset({"tr", "table"})),
    "tr": (frozenset({"tr", "td", "th"}), frozenset({"table", "tbody", "thead", "tfoot"})),
    "dt": (frozenset({"dt", "dd"}), frozenset({"dl"})),
    "dd": (frozenset({"dt", "dd"}), frozenset({"dl"})),
}
_CODE_LANG = re.compile(r"(?:^|\s)(?:language|lang)-([\w+#.-]+)")


class HTMLToBlocks(HTMLParser):
    """Stream HTML into blocks, skipping page chrome; tolerant of unclosed tags."""

    def __init__(self, decide: Callable[[dict[str, str | None]], str] | None = None) -> None:
        """`decide(attrs)` says per element whether its own text is content: "keep", "drop", or
        "list" (a top-level list kept with all it holds unless it is mostly links)."""
        super().__init__(convert_charrefs=True)
        self._decide = decide
        self._links = 0  # depth of open <a> elements
        self._provisional: list[int] | None = None  # [text chars, link chars] of a "list" being read
        self.blocks: list[Block] = []
        self.title_parts: list[str] = []
        self.first_h1 = ""
        self.canonical: str | None = None
        self.og_url: str | None = None
        self._stack: list[tuple[str, bool, bool, str | None]] = []  # (tag, active, starts_skip, verdict)
        self._skip = 0
        self._in_title = False
        self._buf: list[str] = []
        self._heading: int = 0
        self._heading_buf: list[str] = []
        self._pre = 0
        self._pre_buf: list[str] = []
        self._pre_lang = ""
        self._lists: list[list[Any]] = []  # [tag, counter]
        self._prefix = ""
        self._group_depth = 0
        self._group: list[str] = []
        self._cells: list[str] | None = None
        self._cell_parts: list[str] = []
        self._in_cell = False

    # -- output helpers
    def _emit(self, kind: BlockKind, text: str, level: int = 0) -> None:
        if kind == "text" and self._group_depth:
            self._group.append(text)
            return
        self._flush_group()
        self.blocks.append(Block(kind, text, level=level))

    def _flush_group(self) -> None:
        if self._group:
            self.blocks.append(Block("text", "\n".join(self._group)))
            self._group = []

    def _flush(self) -> None:
        text = " ".join("".join(self._buf).split())
        self._buf = []
        if not text:
            return
        if self._in_cell:
            self._cell_parts.append(text)
            return
        self._emit("text", self._prefix + text)
        self._prefix = ""

    def _end_cell(self) -> None:
        if self._in_cell:
            if self._cells is None:
                self._cells = []
            self._cells.append(" ".join(self._cell_parts))
        self._cell_parts = []
        self._in_cell = False

    def _end_row(self) -> None:
        cells = [c for c in (self._cells or []) if c]
        self._cells = None
        if cells:
            self._emit("text", " | ".join(cells))

    # -- tag handling
    def _starts_skip(self, tag: str, attrs: dict[str, str | None]) -> bool:
        if tag == "header" and any(t[0] in ("article", "main") for t in self._stack):
            pass  # an article's own header (title, byline) is content; a page's is chrome
        elif tag in _DROP_TAGS or "hidden" in attrs:
            return True
        return "navigation" in (attrs.get("role") or "").lower().split()

    def _text_is_content(self) -> bool:
        """Text belongs to the innermost element that has a verdict: kept, or inside a weighed list."""
        innermost = None
        for entry in reversed(self._stack):
            if entry[3] == "list":
                return True
            if entry[3] is not None and innermost is None:
                innermost = entry[3]
        return innermost != "drop"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k.lower(): v for k, v in attrs}
        if tag == "link" and "canonical" in (a.get("rel") or "").lower().split():
            self.canonical = self.canonical or (a.get("href") or "").strip() or None
        elif tag == "meta" and (a.get("property") or "").lower() == "og:url":
            self.og_url = self.og_url or (a.get("content") or "").strip() or None
        if tag in _VOID_TAGS:
            if self._skip:
                return
            if tag == "br":
                if self._pre:
                    self._pre_buf.append("\n")
                else:
                    self._buf.append(" ")
            elif tag == "hr":
                self._flush()
            return
        if tag in _IMPLIED_CLOSE and not self._skip:
            closes, bounds = _IMPLIED_CLOSE[tag]
            self._close_within(closes, bounds)
        if tag in _HEADINGS and self._heading and not self._skip:
            self._close_within(frozenset(_HEADINGS), frozenset())
        skip = self._skip == 0 and self._starts_skip(tag, a)
        active = self._skip == 0 and not skip
        verdict = self._decide(a) if self._decide is not None and active else None
        if verdict == "list" and (tag not in ("ul", "ol") or self._group_depth or self._provisional is not None):
            verdict = "keep"  # only a list outside any other list or table is weighed by its links
        if verdict == "list":
            self._provisional = [0, 0]
        self._stack.append((tag, active, skip, verdict))
        if skip:
            self._skip += 1
            return
        if not active:
            return
        self._open(tag, a)

    def _open(self, tag: str, a: dict[str, str | None]) -> None:
        if tag == "a":
            self._links += 1
        if tag == "title":
            self._in_title = True
        elif self._pre:
            if tag == "code" and not self._pre_lang:
                m = _CODE_LANG.search(a.get("class") or "")
                self._pre_lang = m.group(1) if m else ""
        elif tag in _HEADINGS:
            self._flush()
            self._heading = _HEADINGS[tag]
            self._heading_buf = []
        elif tag == "pre":
            self._flush()
            self._pre = 1
            self._pre_buf = []
            m = _CODE_LANG.search(a.get("class") or "")
            self._pre_lang = m.group(1) if m else ""
        elif tag in _BLOCK_TAGS:
            self._flush()
            if tag in ("td", "th"):
                self._end_cell()
                self._in_cell = True
            elif tag == "tr":
                self._end_cell()
                self._end_row()
            elif tag in ("ul", "ol"):
                self._lists.append([tag, 0])
            elif tag == "li":
                depth = max(len(self._lists) - 1, 0)
                if self._lists and self._lists[-1][0] == "ol":
                    self._lists[-1][1] += 1
                    marker = f"{self._lists[-1][1]}. "
                else:
                    marker = "- "
                self._prefix = "  " * depth + marker
            if tag in _GROUP_TAGS:
                self._group_depth += 1

    def _close(self, tag: str) -> None:
        if tag == "a" and self._links:
            self._links -= 1
        if tag == "title":
            self._in_title = False
        elif tag == "pre" and self._pre:
            code = "".join(self._pre_buf)
            code = code[1:] if code.startswith("\n") else code
            code = code.rstrip()
            self._pre = 0
            if code.strip():
                self._emit("code", fence_code(code, self._pre_lang))
        elif self._pre:
            return
        elif tag in _HEADINGS and self._heading:
            text = " ".join("".join(self._heading_buf).split())
            level, self._heading = self._heading, 0
            if text:
                self._emit("heading", text, level)
                if level == 1 and not self.first_h1:
                    self.first_h1 = text
        elif tag in _BLOCK_TAGS:
            self._flush()
            if tag in ("li", "ul", "ol"):
                self._prefix = ""  # an item whose text was all dropped leaves no marker behind
            if tag in ("td", "th"):
                self._end_cell()
            elif tag in ("tr", "table"):
                self._end_cell()
                self._end_row()
            elif tag in ("ul", "ol") and self._lists:
                self._lists.pop()
            if tag in _GROUP_TAGS and self._group_depth:
                self._group_depth -= 1
                if not self._group_depth:
                    if self._provisional is not None:
                        text, links = self._provisional
                        self._provisional = None
                        if not text or links * 2 >= text:
                            self._group, self._prefix = [], ""  # bare links near <body>: navigation
                    self._flush_group()

    def _pop_to(self, index: int) -> None:
        while len(self._stack) > index:
            tag, active, skip, _ = self._stack.pop()
            if skip:
                self._skip -= 1
            elif active:
                self._close(tag)

    def _close_within(self, closes: frozenset[str], bounds: frozenset[str]) -> None:
        for index in range(len(self._stack) - 1, -1, -1):
            tag = self._stack[index][0]
            if tag in closes:
                self._pop_to(index)
                return
            if tag in bounds:
                return

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._stack) - 1, -1, -1):
            if self._stack[index][0] == tag:
                self._pop_to(index)
                return
        if tag in _BLOCK_TAGS and not self._skip:
            self._flush()  # stray end tag: still a boundary

    def handle_data(self, data: str) -> None:
        if self._decide is not None and not self._in_title and not self._text_is_content():
            return
        if self._provisional is not None and not self._skip:
            size = len("".join(data.split()))
            self._provisional[0] += size
            if self._links:
                self._provisional[1] += size
        if self._in_title:
            self.title_parts.append(data)
        elif self._skip:
            return
        elif self._pre:
            self._pre_buf.append(data)
        elif self._heading:
            self._heading_buf.append(data)
        else:
            self._buf.append(data)

    def finish(self) -> None:
        self.close()
        self._pop_to(0)
        self._flush()
        self._end_cell()
        self._end_row()
        self._group_depth = 0
        self._flush_group()
