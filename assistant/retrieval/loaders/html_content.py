"""Main content of an HTML page: the library decides what is chrome, `_HTMLToBlocks` keeps structure.

Real documentation pages are mostly chrome (Sphinx sidebars and breadcrumbs, DocBook
"Prev | Up | Home | Next" tables, man-page footers, cookie banners). Deciding what is main content
is left to Resiliparse's rule set (`extract_plain_text(main_content=True)`, a maintained Lexbor-based
extractor), chosen by measurement over trafilatura, readability-lxml and jusText on two real manuals
(bench/html_extract.py: best recall and precision, every code block whole, ~10x faster and ~1/5 of
trafilatura's memory). It only returns flat text, so its decision is read back per element: each
start tag gets an id attribute and an invisible marker as its first text, the extractor's output
says which markers survived (it skips a rejected element's whole subtree, so the kept set is closed
under ancestors), and the structure-keeping walker in `html_blocks` (headings, fenced code, tables,
lists, title, canonical URL) skips every element whose marker is gone. Marking is done on the
markup text: Resiliparse's Python DOM API is quadratic on large pages.

Resiliparse is imported here only, and this module only from `load_html`, so the chat server never
loads it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from assistant.retrieval.loaders.html_blocks import HTMLToBlocks
from assistant.retrieval.types import Block

# Chrome the extractor's generic rules do not know, by generator (each seen on a real manual).
_CHROME_SELECTORS = [
        "a.headerlink",  # Sphinx/MkDocs permalink "¶"
        "a.hash-link",  # Docusaurus permalink
        "div.navheader",  # DocBook "Prev | Up | Home | Next"
        "div.navfooter",
        "div.breadcrumb, div.breadcrumbs, ul.breadcrumb, ol.breadcrumb, nav.breadcrumb, [aria-label=breadcrumb]",
        "#cookie-banner, #cookie-consent, #cookie-notice, .cookie-banner, .cookie-consent, .cookie-notice",
        "#onetrust-banner-sdk, #CybotCookiebotDialog, .cc-window, .cc-banner",
        "div.sphinxsidebar, div.related, #searchbox",
        "#footer",
        "head", "script", "style",  # the library's default skip list, which a custom list replaces
    ]
# Text blocks that are chrome whatever element holds them.
_CHROME_TEXT = re.compile(
    r"^(?:Part of the \S+ suite\.?"  # man-page footers (git, ...)
    r"|(?:Prev(?:ious)?|Up|Home|Next)(?:\s*\|?\s*(?:Prev(?:ious)?|Up|Home|Next))+"  # DocBook nav
    r"|Last updated:?\s.{0,60})$",
    re.IGNORECASE,
)
_NAV_CLASS = re.compile(
    r"(?:^|[\s_-])(?:nav|navbar|navigation|menu|breadcrumbs?|toc|toctree|sidebar|pager)(?:$|[\s_-])"
)
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"  # private-use: never in real text, invisible if leaked
_MARK = re.compile(f"{_MARK_OPEN}([0-9a-z]+){_MARK_CLOSE}")
_ID_ATTR = "data-mc"
# Not marked: void elements (no text), the document's skeleton, and table/select structure
# (a parser moves text found directly inside those out of them).
_UNMARKED = frozenset(
    "html head body area base br col embed hr img input link meta param source track wbr "
    "table thead tbody tfoot tr colgroup select optgroup option frameset frame".split()
)
_TOKEN = re.compile(
    r"<!--.*?(?:-->|\Z)"
    r"|<(?P<raw>script|style|textarea|title|xmp|noembed|noframes|template)\b[^>]*>.*?(?:</(?P=raw)\s*>|\Z)"
    r"|<(?P<tag>[a-zA-Z][a-zA-Z0-9:-]*)(?P<attrs>(?:\s+[^\s\"'>/=]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?)*)"
    r"\s*(?P<close>/?)>"
    r"|</(?P<end>[a-zA-Z][a-zA-Z0-9:-]*)\s*>",
    re.DOTALL | re.IGNORECASE,
)
_SELF_CLOSING = frozenset("p li dt dd td th tr option optgroup rb rt rp".split())  # closed by a sibling
MAX_NESTING = 400  # real pages stay under ~60; past this the extractor's rules cost O(depth²)
_BODY_START = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


class MainContent:
    """What `extract` found: <title>, first H1, canonical and og URLs, and the content's blocks."""

    def __init__(
        self, title: str, first_h1: str, blocks: list[Block], canonical: str | None, og_url: str | None,
        had_text: bool,
    ):
        self.title = title
        self.first_h1 = first_h1
        self.blocks = blocks
        self.canonical = canonical
        self.og_url = og_url
        self.had_text = had_text  # the page had visible text before chrome was removed


def extract(text: str) -> MainContent:
    """The main content of a decoded HTML page as structural blocks (no case or text changes)."""
    marked, tags, depth = _mark(text)
    if depth > MAX_NESTING:  # the library's rules walk to <body> from every node: quadratic in depth
        return _walk(text, None, had_text=True)
    flat = _plain_text(marked, main_content=True)
    kept = {int(m, 36) for m in _MARK.findall(flat)}
    had_text = bool(_MARK.sub("", flat).strip())
    if not had_text:  # anything to read before the chrome went? (asked only when nothing is left)
        had_text = bool(_MARK.sub("", _plain_text(marked, main_content=False)).strip())
    # Lists the library dropped right after kept content (the element before a list in document
    # order is its parent or its previous sibling's last descendant): chrome lists follow chrome.
    lists = {i for i, tag in enumerate(tags) if tag in ("ul", "ol") and i not in kept and (i - 1 in kept or not i)}
    if lists:  # the library calls any list near <body> global navigation: ask again, nested deeper
        lists &= _kept(_BODY_START.sub(lambda m: m.group(0) + "<div><div><div>", marked, count=1)
                       if _BODY_START.search(marked) else "<div><div><div>" + marked)

    def decide(attrs: dict[str, str | None]) -> str:
        number = attrs.get(_ID_ATTR)
        if number is None or not number.isdigit():
            return "keep"  # not marked (table structure, skeleton): its cells decide
        index = int(number)
        if index in kept:
            return "keep"
        return "list" if index in lists and not _NAV_CLASS.search(_names(attrs)) else "drop"

    return _walk(_MARK.sub("", marked), decide, had_text)  # the walker needs the id attributes only


def _walk(html: str, decide: Callable[[dict[str, str | None]], str] | None, had_text: bool) -> MainContent:
    walker = HTMLToBlocks(decide=decide)
    walker.feed(html)
    walker.finish()
    title = " ".join("".join(walker.title_parts).split())
    return MainContent(title, walker.first_h1, _drop_chrome_blocks(walker.blocks), walker.canonical,
                       walker.og_url, had_text)


def _names(attrs: dict[str, str | None]) -> str:
    return f"{attrs.get('class') or ''} {attrs.get('id') or ''}".lower()


def _mark(text: str) -> tuple[str, list[str], int]:
    """Give every element that can hold text an id attribute and a marker as its first text.

    Also returns an estimate of the deepest nesting (elements that close themselves implicitly,
    like <p> or <li>, are not counted).
    """
    tags: list[str] = []
    depth = deepest = 0

    def mark(match: re.Match[str]) -> str:
        nonlocal depth, deepest
        end = (match.group("end") or "").lower()
        if end:
            if end not in _UNMARKED and end not in _SELF_CLOSING:
                depth = max(depth - 1, 0)
            return match.group(0)
        tag = (match.group("tag") or "").lower()
        if not tag or tag in _UNMARKED or match.group("close"):
            return match.group(0)
        if tag not in _SELF_CLOSING:
            depth += 1
            deepest = max(deepest, depth)
        number = len(tags)
        tags.append(tag)
        return (f"<{match.group('tag')}{match.group('attrs')} {_ID_ATTR}=\"{number}\">"
                f"{_MARK_OPEN}{_b36(number)}{_MARK_CLOSE}")

    marked = _TOKEN.sub(mark, text)
    return marked, tags, deepest


def _plain_text(html: str, main_content: bool) -> str:
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    tree = HTMLTree.parse(html)
    if tree.body is None:
        return ""
    if main_content:
        _rescue_content_headers(tree.body)
    return extract_plain_text(
        tree, preserve_formatting=False, main_content=main_content, alt_texts=False, links=False,
        form_fields=False, noscript=False, list_bullets=False, skip_elements=_CHROME_SELECTORS,
    )


def _kept(marked: str) -> set[int]:
    """Ids of the elements the library keeps as main content."""
    return {int(m, 36) for m in _MARK.findall(_plain_text(marked, main_content=True))}


def _rescue_content_headers(body: Any) -> None:
    """A "header" that holds section headings (AsciiDoc man pages: title + NAME line) is content."""
    for node in list(body.query_selector_all("#header, .header")):
        if node.query_selector("h2, h3, h4, h5, h6") is not None:
            for attr in ("id", "class"):
                if node.hasattr(attr):
                    node.delattr(attr)


def _b36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


def _drop_chrome_blocks(blocks: list[Block]) -> list[Block]:
    """Drop chrome text the markup does not name, then headings left with nothing under them."""
    blocks = [b for b in blocks if b.kind != "text" or not _CHROME_TEXT.match(b.text.strip())]
    out: list[Block] = []
    for i, block in enumerate(blocks):
        if block.kind == "heading":
            nxt = next((b for b in blocks[i + 1 :] if b.kind != "heading" or b.level <= block.level), None)
            if nxt is None or nxt.kind == "heading":
                continue  # an empty section (e.g. man pages' "GIT" once its footer line is gone)
        out.append(block)
    return out
