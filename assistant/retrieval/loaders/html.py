"""HTML (.html, .htm, and pages the crawler fetches): main content as structural blocks.

Which parts of a page are content is decided in `html_content` (Resiliparse), imported inside
`load_html` so that only ingest ever loads that library, never the chat server.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from urllib.parse import urljoin

from assistant.retrieval.errors import IngestError
from assistant.retrieval.loaders.decode import decode, with_encoding
from assistant.retrieval.loaders.document import clean_title, new_doc, one_line
from assistant.retrieval.types import LoadedDocument

KIND = "html"  # the document's `type` metadata (a search filter)
SUFFIXES = (".html", ".htm")
MIME_TYPES = ("text/html", "application/xhtml+xml")


def _html_charset(raw: bytes) -> str | None:
    head = raw[:4096].decode("ascii", "ignore")
    m = re.search(r"<meta[^>]+charset\s*=\s*[\"']?\s*([\w.:-]+)", head, re.IGNORECASE)
    if m is None:
        return None
    try:
        return codecs.lookup(m.group(1)).name
    except LookupError:
        return None


def _absolute_url(url: str | None, base: Path | str) -> str | None:
    """An http(s) URL as is; a relative one resolved against a fetched page's URL; else None."""
    url = (url or "").strip()
    if url and isinstance(base, str) and re.match(r"^https?://", base, re.IGNORECASE):
        url = urljoin(base, url)
    if url and re.match(r"^https?://", url, re.IGNORECASE):
        return url
    return None


def _page_title(title: str, first_h1: str) -> str:
    """The page's <title>, or its H1 when one contains the other.

    "abc — Abstract Base Classes — Python 3.11 documentation" with H1 "abc — Abstract Base
    Classes", or "git-bisect(1)" with H1 "git-bisect(1) Manual Page": the H1 is the title a reader
    sees, and taking it lets heading paths drop the H1 instead of repeating the title.
    """
    title, h1 = clean_title(title), clean_title(first_h1)
    if title and h1 and (h1.casefold() in title.casefold() or title.casefold() in h1.casefold()):
        return h1
    return title or h1


def load(path: Path, raw: bytes) -> LoadedDocument:
    """A local .html file (the registry's signature)."""
    return load_html(raw, path)


def load_html(raw: bytes, source: Path | str, *, charset: str | None = None) -> LoadedDocument:
    """An HTML page from its bytes: a local file (`source` its Path) or a fetched page (its URL).

    `charset` is the one a server declared in Content-Type; the page's own <meta> is the fallback.
    Local files and crawled pages share this one entry point, so both get the same main-content
    extraction (`html_content`, imported here so that only ingest ever loads its library).
    """
    from assistant.retrieval.loaders.html_content import extract

    text, encoding = decode(source, raw, charset or _html_charset(raw))
    try:
        page = extract(text)
    except (AssertionError, ValueError) as exc:  # html.parser's rare hard failures
        raise IngestError(f"{source}: malformed HTML ({one_line(exc)})") from None
    if not any(b.text.strip() for b in page.blocks if b.kind != "heading"):
        if page.had_text:
            raise IngestError(f"{source}: no main content (only navigation, headers or footers); nothing to index")
        raise IngestError(f"{source}: no extractable text, nothing to index")
    doc = new_doc(source, raw, KIND, _page_title(page.title, page.first_h1), page.blocks, with_encoding(encoding))
    doc.url = _absolute_url(page.canonical, source) or _absolute_url(page.og_url, source)
    return doc
