"""`GET /documents/{id}`: open the original of a cited document, by its id in the store.

Citations of local files (uploaded in the chat or ingested from a folder) link here. The route
never takes a path from the request: the id is looked up in the documents table and only the file
recorded there at ingest is read, and only while its bytes still hash to the indexed content.
What is served:

- Markdown and text: the file as `text/plain` (UTF-8, whatever its encoding on disk);
- HTML: the file itself, under a Content-Security-Policy `sandbox` with no script, frame, form or
  remote resource allowed, so a page's scripts never run on the assistant's origin;
- PDF: its indexed text rendered page by page (`#page-N` anchors; `?page=N` marks the cited page),
  with the original PDF as a download (`?download=1`, an attachment, also sandboxed);
- anything whose file is gone or changed since it was indexed (an ephemeral disk after a restart,
  a web page): the indexed text, saying so.

Access follows the chat: with `ASSISTANT_USERS` set, only a signed-in person gets a document.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
import os
import re
from collections.abc import Awaitable, Callable, Sequence
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from assistant.retrieval.errors import AssistantError, DatabaseError

if TYPE_CHECKING:
    from assistant.retrieval.store import Store
    from assistant.retrieval.types import Hit
    from assistant.ui.runtime import Runtime

log = logging.getLogger(__name__)

ROUTE = "/documents/{doc_id}"
ORIGINAL_URL = "original_url"  # Hit.metadata key of a local document's link to this route
MAX_ORIGINAL_BYTES = 25 * 1024 * 1024  # larger files are shown as their indexed text (memory on a small host)
_ID = re.compile(r"[0-9]{1,18}")
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
# What the browser may do with a served original: nothing but show it (no script, plugin, frame, form,
# remote image or style), in an opaque origin that cannot read the assistant's cookies or storage.
SANDBOX_CSP = ("sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none';"
               " form-action 'none'; frame-ancestors 'self'")
_COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                   "Cache-Control": "private, no-store", "Cross-Origin-Resource-Policy": "same-origin"}


# -- links -----------------------------------------------------------------------------------------


def original_path(document_id: int, page: int | None = None) -> str:
    """The route for a document, with the cited PDF page marked and scrolled to."""
    if page:
        return f"/documents/{int(document_id)}?page={int(page)}#page-{int(page)}"
    return f"/documents/{int(document_id)}"


def base_url_from_environ(environ: dict[str, Any] | None) -> str | None:
    """`https://host` the browser used to reach the assistant (behind a proxy too), or None.

    Taken from the chat connection's own request, so in the widget on another site links still
    point at the assistant. `CHAINLIT_URL`, when set, wins (a fixed public address).
    """
    fixed = (os.environ.get("CHAINLIT_URL") or "").strip().rstrip("/")
    if fixed.startswith(("http://", "https://")):
        return fixed
    env = environ or {}
    host = str(env.get("HTTP_X_FORWARDED_HOST") or env.get("HTTP_HOST") or "").split(",")[0].strip()
    if not host or not _HOST.match(host):
        return None
    scheme = str(env.get("HTTP_X_FORWARDED_PROTO") or env.get("wsgi.url_scheme") or "http").split(",")[0].strip()
    scheme = {"ws": "http", "wss": "https"}.get(scheme.lower(), scheme.lower())
    if scheme not in ("http", "https"):
        scheme = "http"
    root = (os.environ.get("CHAINLIT_ROOT_PATH") or "").strip().rstrip("/")
    return f"{scheme}://{host}{root}"


def session_base_url() -> str | None:
    """The assistant's address as this chat's browser reached it (None outside a Chainlit session)."""
    try:
        from chainlit.context import context

        environ = context.session.environ
    except Exception:  # no session (a background task, a test without one)
        return base_url_from_environ(None)
    return base_url_from_environ(environ)


def link_local_sources(hits: Sequence[Hit], base_url: str | None) -> None:
    """Give every retrieved local document (no web URL of its own) a link to its original here,
    kept apart from `hit.url` (the document's own address, which names the source elsewhere)."""
    if not base_url:
        return
    for hit in hits:
        if not hit.url and "://" not in (hit.source or ""):
            hit.metadata = {**hit.metadata, ORIGINAL_URL: base_url + original_path(hit.document_id, hit.page)}


def original_link(hit: Hit) -> str | None:
    """The link `link_local_sources` gave this hit, if any."""
    value = (hit.metadata or {}).get(ORIGINAL_URL)
    return value if isinstance(value, str) else None


# -- rendering -------------------------------------------------------------------------------------


def _strip_overlap(previous: str, text: str, longest: int = 4000, shortest: int = 24) -> str:
    """`text` without the start it repeats from the end of `previous` (chunks overlap by design)."""
    tail = previous[-longest:]
    probe = text[:shortest]
    if len(probe) < shortest:
        return text
    best = 0
    start = tail.find(probe)
    while start != -1:
        k = len(tail) - start
        if k <= len(text) and text.startswith(tail[start:]):
            best = k
            break
        start = tail.find(probe, start + 1)
    return text[best:].lstrip() if best else text


def _sections(chunks: list[dict[str, Any]], by_page: bool) -> list[tuple[str, str, str]]:
    """(anchor, heading, text) groups of the indexed text, overlap removed."""
    out: list[tuple[str, str, str]] = []

    def key(c: dict[str, Any]) -> Any:
        return c["page"] if by_page else tuple(c["heading_path"] or ())

    for k, group in groupby(chunks, key=key):
        parts: list[str] = []
        for chunk in group:
            text = chunk["text"]
            parts.append(_strip_overlap(parts[-1], text) if parts else text)
        if by_page:
            anchor, heading = f"page-{k}", f"Page {k}" if k else "Text"
        else:
            anchor, heading = f"part-{len(out) + 1}", " › ".join(k)
        out.append((anchor, heading, "\n\n".join(p for p in parts if p.strip())))
    return out


def render_text_page(row: dict[str, Any], chunks: list[dict[str, Any]], *, note: str, page: int | None,
                     download: bool) -> str:
    """A self-contained HTML page of a document's indexed text; everything from the document escaped."""
    e = html.escape
    is_pdf = row.get("type") == "pdf"
    sections = _sections(chunks, by_page=is_pdf)
    body: list[str] = []
    for anchor, heading, text in sections:
        cited = " cited" if page and anchor == f"page-{page}" else ""
        h = f"<h2>{e(heading)}</h2>" if heading else ""
        body.append(f'<section id="{anchor}" class="part{cited}">{h}<div class="text">{e(text)}</div></section>')
    notes = [f"<p class='note'>{e(note)}</p>"] if note else []
    if page and is_pdf:
        if any(a == f"page-{page}" for a, _, _ in sections):
            notes.append(f"<p class='note'>The answer cited <a href='#page-{page}'>page {page}</a>.</p>")
        else:
            notes.append(f"<p class='note'>No indexed text on page {page}.</p>")
    if download:
        name = e(row.get("filename") or "file")
        notes.append(f"<p class='note'><a href='?download=1'>Download the original {name}</a></p>")
    web = row.get("url") or (row["source"] if "://" in row["source"] else "")
    if web.startswith(("http://", "https://")):
        notes.append(f"<p class='note'>Online: <a href='{e(web)}' rel='noopener noreferrer'>{e(web)}</a></p>")
    title = row.get("title") or row.get("filename") or "Document"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>
body {{ font: 16px/1.55 system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; color: #1f2328; }}
h1 {{ font-size: 1.5rem; margin-bottom: .25rem; }} h2 {{ font-size: 1.1rem; margin: 1.5rem 0 .5rem; color: #57606a; }}
.meta, .note {{ color: #57606a; font-size: .9rem; margin: .25rem 0; }}
.text {{ white-space: pre-wrap; overflow-wrap: anywhere; }}
.part {{ border-left: 3px solid transparent; padding-left: .75rem; }}
.part.cited, .part:target {{ border-left-color: #d4a72c; background: #fff8c5; }}
</style></head><body>
<h1>{e(title)}</h1>
<p class="meta">{e(row.get('filename') or row['source'])} · {int(row.get('chunk_count') or 0)} passages indexed</p>
{''.join(notes)}
{''.join(body) or '<p>(no indexed text)</p>'}
</body></html>"""


# -- serving ---------------------------------------------------------------------------------------


def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**_COMMON_HEADERS, **(extra or {})}


def _plain(status: int, title: str, line: str) -> HTMLResponse:
    page = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body style='font: 16px system-ui, sans-serif; margin: 2rem'><h1>{html.escape(title)}</h1>"
            f"<p>{line}</p></body></html>")
    return HTMLResponse(page, status_code=status, headers=_headers({"Content-Security-Policy": SANDBOX_CSP}))


def _read_original(row: dict[str, Any]) -> tuple[bytes | None, str]:
    """The file indexed as this document, if it is still there and unchanged; else why not."""
    source = row["source"]
    if "://" in source:
        return None, "This document is a web page; below is the text that was indexed."
    path = Path(source)
    try:
        if not path.is_file():
            return None, "The original file is no longer on the server; below is the text that was indexed."
        if path.stat().st_size > MAX_ORIGINAL_BYTES:
            return None, "The original file is too large to show here; below is the text that was indexed."
        raw = path.read_bytes()
    except OSError:
        return None, "The original file cannot be read on the server; below is the text that was indexed."
    if hashlib.sha256(raw).hexdigest() != row.get("content_hash"):
        return None, ("The file has changed since it was indexed (ingest it again to update the answers);"
                      " below is the text that was indexed.")
    return raw, ""


def _decoded(raw: bytes, row: dict[str, Any]) -> str:
    encoding = str((row.get("metadata") or {}).get("encoding") or "utf-8")
    try:
        return raw.decode(encoding, errors="replace")
    except LookupError:
        return raw.decode("utf-8", errors="replace")


def document_response(store: Store, document_id: int, *, page: int | None = None, download: bool = False) -> Response:
    """The response for one document id (blocking: database and file reads; run it off the event loop)."""
    rows = store.documents(ids=[document_id], limit=1)
    if not rows:
        return _plain(404, "No such document", "This document is not in the index (it may have been removed).")
    row = rows[0]
    raw, note = _read_original(row)
    kind = row.get("type") or ""
    filename = row.get("filename") or f"document-{document_id}"
    if raw is not None and download:
        disposition = f"attachment; filename*=UTF-8''{quote(filename)}"
        media = {"pdf": "application/pdf", "html": "text/html"}.get(kind, "text/plain; charset=utf-8")
        return Response(raw, media_type=media, headers=_headers({"Content-Disposition": disposition,
                                                                 "Content-Security-Policy": SANDBOX_CSP}))
    if raw is not None and kind in ("md", "txt"):
        return Response(_decoded(raw, row).encode("utf-8"), media_type="text/plain; charset=utf-8",
                        headers=_headers({"Content-Security-Policy": SANDBOX_CSP,
                                          "Content-Disposition": f"inline; filename*=UTF-8''{quote(filename)}"}))
    if raw is not None and kind == "html":
        return Response(_decoded(raw, row).encode("utf-8"), media_type="text/html; charset=utf-8",
                        headers=_headers({"Content-Security-Policy": SANDBOX_CSP}))
    chunks = store.document_chunks(document_id)
    page_html = render_text_page(row, chunks, note=note, page=page, download=raw is not None)
    return HTMLResponse(page_html, headers=_headers({"Content-Security-Policy": SANDBOX_CSP}))


Authorize = Callable[[Request], Awaitable[bool]]


async def chainlit_login(request: Request) -> bool:
    """The chat's own rule: with a login configured, a valid session cookie (or bearer token)."""
    from assistant.upstream_compat import request_is_signed_in

    return await request_is_signed_in(request)


class Originals:
    """The endpoint, over the app's shared Runtime (a getter, so tests can swap it)."""

    def __init__(self, runtime: Runtime | Callable[[], Runtime], authorize: Authorize = chainlit_login) -> None:
        self._runtime = runtime
        self.authorize = authorize

    @property
    def runtime(self) -> Runtime:
        from assistant.ui.runtime import Runtime

        return self._runtime if isinstance(self._runtime, Runtime) else self._runtime()

    async def endpoint(self, request: Request) -> Response:
        if not await self.authorize(request):
            return _plain(401, "Sign in first", "This document is private: <a href='/login'>sign in</a> to the"
                          " assistant, then open the link again.")
        raw_id = request.path_params.get("doc_id", "")
        if not _ID.fullmatch(raw_id):
            return _plain(404, "No such document", "Document links look like /documents/12.")
        page_arg = request.query_params.get("page", "")
        page = int(page_arg) if page_arg.isdigit() and len(page_arg) < 7 else None
        download = request.query_params.get("download") == "1"
        try:
            retriever = await self.runtime.aretriever()
            return await asyncio.to_thread(document_response, retriever.store, int(raw_id), page=page,
                                           download=download)
        except DatabaseError:
            return _plain(503, "Try again in a moment", "The document database is not reachable right now.")
        except AssistantError as err:
            return _plain(503, "Not available", html.escape(" ".join(str(err).split())[:200]))
        except Exception:
            log.exception("serving document %s failed", raw_id)
            return _plain(500, "Something went wrong", "The document could not be shown; tell the site owner.")


def install_originals(app: Any, originals: Originals, path: str = ROUTE) -> None:
    """Add `GET path` to Chainlit's FastAPI app ahead of its `/{full_path:path}` catch-all."""
    from assistant.upstream_compat import add_route_first

    add_route_first(app, path, originals.endpoint)
