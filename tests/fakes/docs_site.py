"""A real documentation website on 127.0.0.1 for the crawler: pages, sitemap, robots.txt, faults.

A stdlib ThreadingHTTPServer (port 0) serves a folder of HTML pages (by default a copy of six
pages of the Python documentation in tests/data/docs_site, with their real relative links: links
to pages not in the copy answer 404 as on a partial mirror) under `/docs/`, plus:

    /docs/                     an index page linking to every page (with #fragment and ?query
                               variants of one link, and links a crawler must ignore)
    /docs/sitemap.xml          a sitemap of every page (and one page linked from nowhere else)
    /robots.txt                disallows /docs/private/ and names the sitemap
    ETag / Last-Modified       on every page; If-None-Match / If-Modified-Since give 304

With `faults=True` the index also links to pages that misbehave (under /docs/faults/):
    gone.html 410, missing.html 404, error.html 500, away.html (302 to another host),
    loop-a.html <-> loop-b.html (redirect loop), moved.html (301 to a real page, in scope),
    big.html (50 MB, Content-Length declared), stream.html (50 MB chunked, no length),
    data (application/json), slow.html (answers after `slow_seconds`), private/secret.html (robots).

`robots=` replaces robots.txt's text, `robots_status=` its status. `site.remove(path)` makes a
page 404 from then on; `site.write(path, html)` changes or adds one.
Every request is logged in `site.requests` as (method, path, status, bytes of body sent).
"""

from __future__ import annotations

import email.utils
import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

PAGES = Path(__file__).resolve().parents[1] / "data" / "docs_site"
BIG = 50 * 2**20


class DocsSite:
    """Start with `with DocsSite() as site:`; `site.url` is `http://127.0.0.1:PORT/docs/`."""

    def __init__(self, root: Path = PAGES, *, faults: bool = False, slow_seconds: float = 3.0,
                 robots: str | None = None, robots_status: int = 200) -> None:
        self.pages: dict[str, bytes] = {
            "/docs/" + p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.html"))
        }
        self.modified: dict[str, float] = dict.fromkeys(self.pages, 1_700_000_000.0)
        self.faults = faults
        self.slow_seconds = slow_seconds
        self.robots = robots
        self.robots_status = robots_status
        self.requests: list[tuple[str, str, int, int]] = []
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.url = f"{self.origin}/docs/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> DocsSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- what tests change and read

    def remove(self, path: str) -> None:
        with self._lock:
            self.pages.pop(path, None)

    def write(self, path: str, html: str | bytes) -> None:
        with self._lock:
            self.pages[path] = html.encode() if isinstance(html, str) else html
            self.modified[path] = time.time()

    def count(self, status: int | None = None, prefix: str = "") -> int:
        with self._lock:
            return sum(1 for _, p, s, _ in self.requests if p.startswith(prefix) and (status is None or s == status))

    def bytes_sent(self) -> int:
        with self._lock:
            return sum(b for *_, b in self.requests)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- content

    def index_html(self) -> bytes:
        links = [f'<li><a href="{p.removeprefix("/docs/")}">{p.rsplit("/", 1)[-1]}</a></li>'
                 for p in sorted(self.pages) if p != "/docs/library/secrets.html"]  # that one: sitemap only
        links += ['<li><a href="library/copy.html#module-copy">copy, a section</a></li>',
                  '<li><a href="library/copy.html?highlight=deepcopy">copy, highlighted</a></li>',
                  '<li><a href="javascript:alert(1)">script</a> <a href="mailto:docs@example.com">mail</a>'
                  ' <a href="file:///etc/passwd">file</a> <a href="http://[::1">broken</a>'
                  ' <a href="../outside.html">outside the prefix</a> <a href="logo.png">logo</a></li>']
        if self.faults:
            links += [f'<li><a href="{p}">{p}</a></li>' for p in (
                "faults/gone.html", "faults/missing.html", "faults/error.html", "faults/away.html",
                "faults/loop-a.html", "faults/moved.html", "faults/big.html", "faults/stream.html",
                "faults/data", "faults/slow.html", "private/secret.html")]
        body = ("<!DOCTYPE html><html><head><title>Documentation index</title></head><body>"
                "<nav><a href='/'>Home</a></nav><main><h1>Documentation</h1>"
                "<p>Every page of this copy of the Python documentation, one link each.</p>"
                f"<ul>{''.join(links)}</ul></main></body></html>")
        return body.encode()

    def sitemap_xml(self) -> bytes:
        urls = "".join(f"<url><loc>{self.origin}{p}</loc></url>" for p in sorted(self.pages))
        return (f'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/'
                f'sitemap/0.9"><url><loc>{self.url}</loc></url>{urls}</urlset>').encode()

    def robots_txt(self) -> bytes:
        text = self.robots if self.robots is not None else (
            f"User-agent: *\nDisallow: /docs/private/\n\nSitemap: {self.url}sitemap.xml\n")
        return text.encode()

    # -- the handler

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                try:
                    sent = site._answer(self, path)
                except (BrokenPipeError, ConnectionResetError):
                    sent = (499, 0)  # the client hung up (a size cap or a timeout did its job)
                with site._lock:
                    site.requests.append(("GET", path, sent[0], sent[1]))

        return Handler

    def _answer(self, h: BaseHTTPRequestHandler, path: str) -> tuple[int, int]:
        if path == "/robots.txt":
            return _send(h, self.robots_status, self.robots_txt(), "text/plain")
        if path == "/docs/sitemap.xml":
            return _send(h, 200, self.sitemap_xml(), "application/xml")
        if self.faults and path.startswith(("/docs/faults/", "/docs/private/")):
            return self._fault(h, path)
        with self._lock:
            page, modified = self.pages.get(path), self.modified.get(path, 0.0)
        if path == "/docs/":
            page, modified = self.index_html(), 1_700_000_000.0
        if page is None:
            return _send(h, 404, b"<html><body><h1>Not found</h1></body></html>")
        etag = '"' + hashlib.sha256(page).hexdigest()[:16] + '"'
        last_modified = email.utils.formatdate(modified, usegmt=True)
        if h.headers.get("If-None-Match") == etag or (
            h.headers.get("If-None-Match") is None and h.headers.get("If-Modified-Since") == last_modified
        ):
            return _send(h, 304, b"", headers={"ETag": etag, "Last-Modified": last_modified})
        return _send(h, 200, page, headers={"ETag": etag, "Last-Modified": last_modified})

    def _fault(self, h: BaseHTTPRequestHandler, path: str) -> tuple[int, int]:
        name = path.rsplit("/", 1)[-1]
        if name == "gone.html":
            return _send(h, 410, b"gone")
        if name == "error.html":
            return _send(h, 500, b"<html><body>Internal error</body></html>")
        if name == "away.html":
            return _send(h, 302, b"", headers={"Location": "http://elsewhere.invalid/docs/"})
        if name in ("loop-a.html", "loop-b.html"):
            other = "loop-b.html" if name == "loop-a.html" else "loop-a.html"
            return _send(h, 302, b"", headers={"Location": other})
        if name == "moved.html":
            return _send(h, 301, b"", headers={"Location": f"{self.url}library/glob.html"})
        if name == "data":
            return _send(h, 200, b'{"not": "html"}', "application/json")
        if name == "big.html":
            h.send_response(200)
            h.send_header("Content-Type", "text/html")
            h.send_header("Content-Length", str(BIG))
            h.end_headers()
            return 200, _stream(h, BIG, chunked=False)
        if name == "stream.html":
            h.send_response(200)
            h.send_header("Content-Type", "text/html; charset=utf-8")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            return 200, _stream(h, BIG, chunked=True)
        if name == "slow.html":
            time.sleep(self.slow_seconds)
            return _send(h, 200, b"<html><body><p>Finally an answer.</p></body></html>")
        if name == "secret.html":
            return _send(h, 200, b"<html><body><p>robots.txt says no.</p></body></html>")
        return _send(h, 404, b"not found")


class _QuietServer(ThreadingHTTPServer):
    """A client hanging up (size caps, timeouts, unread error bodies) is normal here, not an error."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _send(h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str = "text/html; charset=utf-8",
          headers: dict[str, str] | None = None) -> tuple[int, int]:
    h.send_response(status)
    if status != 304:
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
        h.send_header(key, value)
    h.end_headers()
    if status != 304:
        h.wfile.write(body)
    return status, len(body) if status != 304 else 0


def _stream(h: BaseHTTPRequestHandler, total: int, *, chunked: bool) -> int:
    """Send `total` bytes of HTML paragraphs in 64 KB pieces until done or the client hangs up."""
    piece = (b"<p>" + b"filler text " * 5000 + b"</p>\n")[: 64 * 1024]
    sent = 0
    while sent < total:
        part = piece[: total - sent]
        if chunked:
            h.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        else:
            h.wfile.write(part)
        sent += len(part)
    if chunked:
        h.wfile.write(b"0\r\n\r\n")
    return sent
