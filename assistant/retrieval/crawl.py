"""Ingest a website: crawl the pages under a URL prefix and hand them to the ingest pipeline.

`python -m assistant ingest https://docs.example.com/guide/` starts here. Pages are found by their
links, the site's sitemap(s) and the pages already indexed from the same prefix (so a re-run
revisits every known page and notices the ones that are gone). robots.txt is honoured (Protego,
RFC 9309: a 5xx robots.txt means "do not crawl"); one host gets one request per `delay` seconds
(or its Crawl-delay) however many requests run at once. Each page is fetched with the ETag /
Last-Modified it had last time (kept in the document's metadata), so an unchanged page costs a 304
and no download. A 304 page's links are not known, but every indexed page is revisited anyway and
a new page is found through the page that now links to it (changed, so downloaded) or the sitemap.

Only http(s) is crawled, never out of the prefix (redirects included); bodies are streamed under a
size cap and a per-request deadline. Every problem is one line about one URL; the crawl goes on.
Sitemaps are parsed with the standard library: ultimate-sitemap-parser would bring `requests` and
its own fetching, outside these caps and this client.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from assistant.retrieval.errors import IngestError
from assistant.retrieval.loaders import load_html
from assistant.retrieval.types import LoadedDocument

if TYPE_CHECKING:
    from assistant.retrieval.store import Store

USER_AGENT = "doc-assistant-crawler/1.0 (+https://github.com/; respects robots.txt)"
ROBOTS_AGENT = "doc-assistant-crawler"
HTML_TYPES = ("text/html", "application/xhtml+xml")
MAX_SITEMAPS = 50
# Links to these are never pages: not worth a request.
_ASSET = re.compile(
    r"\.(?:png|jpe?g|gif|svg|webp|ico|css|js|mjs|map|json|xml|txt|pdf|zip|gz|tgz|bz2|xz|tar|whl|egg|exe|dmg|"
    r"mp[34]|webm|woff2?|ttf|eot|otf|epub|mobi|rst|md)$",
    re.IGNORECASE,
)

# A source for `ingest_paths`: (name, load); load() gives the document, None when unchanged, or
# raises IngestError with the one-line reason.
Source = tuple[str, Callable[[], "LoadedDocument | None"]]


@dataclass
class CrawlOptions:
    """Limits of one crawl (command-line options of `ingest`)."""

    max_pages: int = 500
    concurrency: int = 4
    delay: float = 0.5  # seconds between two requests to one host
    timeout: float = 20.0  # per request: connect, each read, and the whole body
    max_bytes: int = 10 * 2**20
    max_redirects: int = 5


@dataclass
class CrawlStats:
    """What one crawl did; `summary()` is its closing line."""

    requests: int = 0
    downloaded: int = 0
    not_modified: int = 0
    unchanged: int = 0  # downloaded, but the same bytes as stored
    bytes: int = 0
    gone: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    disallowed: list[str] = field(default_factory=list)
    pages: int = 0
    seconds: float = 0.0

    def summary(self, prefix: str) -> str:
        rate = self.pages / self.seconds if self.seconds else 0.0
        return (f"crawl {prefix}: {self.pages} pages ({self.downloaded} downloaded, {self.not_modified} not"
                f" modified, {len(self.gone)} gone), {self.requests} requests, {self.bytes / 2**20:.1f} MB"
                f" in {self.seconds:.1f} s ({rate:.1f} pages/s)")


def is_url(text: str) -> bool:
    """Does a command-line argument name a URL (any scheme) rather than a file?"""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) is not None


def normalize_url(url: str, base: str | None = None) -> str | None:
    """The key of a page: absolute http(s), no fragment or query, lowercase host, no default port.

    Fragments and query strings are dropped: on a documentation site `page.html#x` and
    `page.html?highlight=y` are one page. None for other schemes and unparsable URLs.
    """
    try:
        full = urljoin(base, url.strip()) if base else url.strip()
        parts = urlsplit(full)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            return None
        host = parts.hostname.lower()
        if ":" in host:
            host = f"[{host}]"
        port = parts.port
    except ValueError:  # bad port, bad IPv6 literal
        return None
    if port and port != {"http": 80, "https": 443}[scheme]:
        host = f"{host}:{port}"
    path = re.sub(r"/{2,}", "/", parts.path or "/")
    if " " in path:
        path = path.replace(" ", "%20")
    return urlunsplit((scheme, host, path, "", ""))


def site_prefix(url: str) -> str:
    """The part of the site a crawl stays in: the start URL's folder (`/guide/x.html` -> `/guide/`)."""
    return url if url.endswith("/") else url.rsplit("/", 1)[0] + "/"


def refusal(arg: str) -> str | None:
    """Why a URL argument cannot be crawled (one line), or None."""
    scheme = arg.split(":", 1)[0].lower()
    if scheme == "file":
        return f"{arg}: file:// URLs are not crawled; give the file or folder path instead"
    if scheme not in ("http", "https"):
        return f"{arg}: only http:// and https:// URLs can be crawled, not {scheme}://"
    if normalize_url(arg) is None:
        return f"{arg}: not a valid URL (expected http(s)://host/path)"
    return None


class _LinkParser(HTMLParser):
    """The href of every <a> and <area>, resolved against <base href> when the page has one."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "base" and a.get("href") and self.base is None:
            self.base = a["href"]
        elif tag in ("a", "area") and a.get("href") and "nofollow" not in (a.get("rel") or "").lower():
            self.hrefs.append(a["href"] or "")


@dataclass
class _Outcome:
    """The result of visiting one URL (never an exception)."""

    url: str
    kind: str  # "page" | "not_modified" | "unchanged" | "gone" | "failed" | "skipped"
    message: str = ""
    doc: LoadedDocument | None = None
    links: list[str] = field(default_factory=list)


class Crawler:
    """One crawl of one URL prefix; `sources()` feeds `ingest_paths`, then `finish()` prunes."""

    def __init__(self, start: str, store: Store, options: CrawlOptions | None = None, *, prune: bool = False,
                 log: Callable[[str], None] | None = None, client: httpx.Client | None = None) -> None:
        self.arg = start
        self.options = options or CrawlOptions()
        self.prune = prune
        self.say = log or (lambda msg: print(msg, file=sys.stderr))
        self.stats = CrawlStats()
        self.store = store
        self.start = normalize_url(start) if refusal(start) is None else None
        self.prefix = site_prefix(self.start) if self.start else ""
        self._client = client
        self._robots: Any = None
        self._delay = self.options.delay
        self._next_slot = 0.0
        self._slot_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._stored: dict[str, tuple[str, dict[str, Any]]] = {}

    # -- the seam: sources for ingest_paths ------------------------------------------------

    def sources(self) -> Iterator[Source]:
        """Pages as (URL, load) pairs, as they arrive; unchanged ones load to None."""
        problem = refusal(self.arg)
        if problem:
            yield self.arg, _raiser(problem)
            return
        started = time.monotonic()
        own_client = self._client is None
        client = self._client or httpx.Client(
            timeout=httpx.Timeout(self.options.timeout), follow_redirects=False,
            headers={"User-Agent": USER_AGENT}, limits=httpx.Limits(max_connections=self.options.concurrency),
        )
        try:
            self._client = client
            self._stored = self._stored_pages()
            blocked = self._read_robots()
            if blocked:
                yield self.start, _raiser(blocked)
                return
            yield from self._crawl()
        finally:
            if own_client:
                client.close()
                self._client = None
            self.stats.seconds = time.monotonic() - started

    def finish(self) -> list[str]:
        """After the pages are ingested: prune the gone ones (with --prune) and say what happened."""
        if not self.start:
            return []
        gone_stored = [u for u in self.stats.gone if u in self._stored]
        if self.prune and gone_stored:
            self.store.delete_documents(gone_stored)
            self.stats.pruned = gone_stored
            for url in gone_stored:
                self.say(f"pruned {url} (the site says it is gone)")
        elif gone_stored:
            self.say(f"{len(gone_stored)} indexed pages are gone from the site; `--prune` removes them")
        if self.stats.disallowed:
            self.say(f"{len(self.stats.disallowed)} links not followed: robots.txt disallows them"
                     f" (e.g. {self.stats.disallowed[0]})")
        self.say(self.stats.summary(self.prefix))
        return self.stats.pruned

    # -- crawl loop ------------------------------------------------------------------------

    def _crawl(self) -> Iterator[Source]:
        assert self.start is not None
        seeds = [self.start, *self._sitemap_urls(), *sorted(self._stored)]
        frontier: deque[str] = deque()
        seen: set[str] = set()
        for url in seeds:
            self._enqueue(url, frontier, seen)
        indexed: dict[str, str] = {}  # canonical URL -> the page indexed for it this run
        visited = 0
        with ThreadPoolExecutor(max_workers=max(1, self.options.concurrency),
                                thread_name_prefix="crawl") as pool:
            inflight: dict[Future[_Outcome], str] = {}
            while frontier or inflight:
                while frontier and len(inflight) < self.options.concurrency and visited < self.options.max_pages:
                    url = frontier.popleft()
                    visited += 1
                    inflight[pool.submit(self._visit, url)] = url
                if not inflight:
                    break
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    asked = inflight.pop(future)
                    outcome = future.result()
                    if outcome.url != asked:  # redirected within the prefix to another page
                        if outcome.url in seen:
                            continue  # that page is (or will be) visited under its own URL
                        seen.add(outcome.url)
                    for link in outcome.links:
                        self._enqueue(link, frontier, seen)
                    item = self._source_of(outcome, indexed)
                    if item is not None:
                        yield item
            if frontier:
                self.say(f"stopped at --max-pages {self.options.max_pages}: {len(frontier)} more pages"
                         " found but not visited")
        self.stats.pages = visited

    def _enqueue(self, url: str, frontier: deque[str], seen: set[str]) -> None:
        if url in seen or not url.startswith(self.prefix) or _ASSET.search(urlsplit(url).path):
            return
        seen.add(url)
        if not self._allowed(url):
            self.stats.disallowed.append(url)
            return
        frontier.append(url)

    def _source_of(self, outcome: _Outcome, indexed: dict[str, str]) -> Source | None:
        url = outcome.url
        if outcome.kind == "page" and outcome.doc is not None:
            canonical = normalize_url(outcome.doc.url or url) or url
            if canonical in indexed and indexed[canonical] != url:
                self.say(f"skipped {url}: same page as {indexed[canonical]} (canonical URL)")
                return None
            indexed[canonical] = url
            doc = outcome.doc
            return url, lambda: doc
        if outcome.kind in ("not_modified", "unchanged"):
            return url, lambda: None
        if outcome.kind == "gone":
            self.stats.gone.append(url)
            if url == self.start:
                return url, _raiser(f"{url}: {outcome.message} (not found); check the address")
            if url in self._stored:
                self.say(f"gone {url}: {outcome.message}")
            return None
        if outcome.kind == "failed" or url == self.start:  # the page asked for is never just skipped
            return url, _raiser(f"{url}: {outcome.message}")
        self.say(f"skipped {url}: {outcome.message}")
        return None

    # -- one page --------------------------------------------------------------------------

    def _visit(self, url: str) -> _Outcome:
        try:
            return self._fetch(url)
        except httpx.TimeoutException:
            return _Outcome(url, "failed", f"no answer within {self.options.timeout:g} s (timeout); try again later")
        except httpx.HTTPError as exc:
            return _Outcome(url, "failed", f"cannot fetch ({_one_line(exc)})")

    def _fetch(self, url: str) -> _Outcome:
        stored_hash, meta = self._stored.get(url, ("", {}))
        headers = {"Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"}
        if meta.get("etag"):
            headers["If-None-Match"] = str(meta["etag"])
        if meta.get("last_modified"):
            headers["If-Modified-Since"] = str(meta["last_modified"])
        hops = [url]
        current = url
        for _ in range(self.options.max_redirects + 1):
            self._wait_turn()
            assert self._client is not None
            with self._client.stream("GET", current, headers=headers) as resp:
                self._count(requests=1)
                if resp.status_code in (301, 302, 303, 307, 308):  # httpx counts 304 as a redirect too
                    location = resp.headers.get("location", "")
                    target = normalize_url(location, base=current)
                    if target is None or not target.startswith(self.prefix):
                        return _Outcome(url, "skipped", f"redirects to {location or '(nowhere)'}, outside"
                                        f" {self.prefix}; not followed")
                    if target in hops:
                        return _Outcome(url, "failed", f"redirect loop ({' -> '.join([*hops, target])})")
                    if not self._allowed(target):
                        return _Outcome(url, "skipped", f"redirects to {target}, which robots.txt disallows")
                    hops.append(target)
                    current = target
                    headers.pop("If-None-Match", None)  # validators belong to the URL first asked
                    headers.pop("If-Modified-Since", None)
                    continue
                if resp.status_code == 304:
                    self._count(not_modified=1)
                    return _Outcome(url, "not_modified")
                if resp.status_code in (404, 410):
                    return _Outcome(url, "gone", f"HTTP {resp.status_code}")
                if resp.status_code >= 400:
                    return _Outcome(url, "failed", f"HTTP {resp.status_code} {resp.reason_phrase}; try again later")
                if current != url:
                    stored_hash, meta = self._stored.get(current, ("", {}))
                return self._read_page(current, resp, stored_hash, meta)
        return _Outcome(url, "failed", f"more than {self.options.max_redirects} redirects")

    def _read_page(self, url: str, resp: httpx.Response, stored_hash: str, meta: dict[str, Any]) -> _Outcome:
        """A 200 answer for `url` (after in-scope redirects: the page is indexed under its final URL)."""
        ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in HTML_TYPES:
            return _Outcome(url, "skipped", f"not an HTML page ({ctype or 'no content type'})")
        raw, problem = self._read_body(resp)
        if problem:
            return _Outcome(url, "failed", problem)
        self._count(downloaded=1, bytes=len(raw))
        validators = {"etag": resp.headers.get("etag"), "last_modified": resp.headers.get("last-modified")}
        text_for_links = raw.decode(resp.charset_encoding or "utf-8", "replace")
        links = self._links(text_for_links, url)
        if stored_hash and stored_hash == hashlib.sha256(raw).hexdigest():
            self._count(unchanged=1)
            if any(meta.get(k) != v for k, v in validators.items()):
                self._update_metadata(url, validators)
            return _Outcome(url, "unchanged", links=links)
        try:
            doc = load_html(raw, url, charset=resp.charset_encoding)
        except IngestError as err:
            return _Outcome(url, "failed", str(err).removeprefix(f"{url}: "), links=links)
        doc.url = doc.url or url
        doc.metadata.update({k: v for k, v in validators.items() if v})
        doc.metadata["site"] = self.prefix
        return _Outcome(url, "page", doc=doc, links=links)

    def _read_body(self, resp: httpx.Response) -> tuple[bytes, str | None]:
        """The body under the size cap and the deadline: (bytes, None) or (b"", one-line reason)."""
        cap = self.options.max_bytes
        declared = resp.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            return b"", f"page is {int(declared) / 2**20:.1f} MB, over the {cap / 2**20:g} MB limit; not downloaded"
        deadline = time.monotonic() + self.options.timeout
        parts: list[bytes] = []
        size = 0
        for part in resp.iter_bytes():
            size += len(part)
            if size > cap:
                return b"", f"page is over the {cap / 2**20:g} MB limit; download stopped"
            if time.monotonic() > deadline:
                return b"", f"page took over {self.options.timeout:g} s to download (too slow); try again later"
            parts.append(part)
        return b"".join(parts), None

    def _links(self, text: str, page_url: str) -> list[str]:
        parser = _LinkParser()
        try:
            parser.feed(text)
            parser.close()
        except (AssertionError, ValueError):  # html.parser's rare hard failures: keep what it found
            pass
        base = urljoin(page_url, parser.base) if parser.base else page_url
        out: list[str] = []
        for href in parser.hrefs:
            url = normalize_url(href, base)
            if url and url.startswith(self.prefix) and url not in out:
                out.append(url)
        return out

    # -- politeness and robots.txt ---------------------------------------------------------

    def _wait_turn(self) -> None:
        """One request per `delay` seconds to this host, whichever thread asks."""
        with self._slot_lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self._delay
        if slot > now:
            time.sleep(slot - now)

    def _read_robots(self) -> str | None:
        """Fetch and parse robots.txt; a one-line reason when the start page may not be crawled."""
        from protego import Protego

        assert self.start is not None
        parts = urlsplit(self.start)
        robots_url = f"{parts.scheme}://{parts.netloc}/robots.txt"
        try:
            self._wait_turn()
            assert self._client is not None
            with self._client.stream("GET", robots_url) as resp:
                self._count(requests=1)
                raw, problem = self._read_body(resp) if resp.status_code == 200 else (b"", None)
        except httpx.HTTPError as exc:
            return f"{self.start}: cannot fetch {robots_url} ({_one_line(exc)}); check the address"
        if resp.status_code >= 500:  # RFC 9309: the site may be down; assume everything is disallowed
            return f"{self.start}: {robots_url} answered HTTP {resp.status_code}; not crawling (try again later)"
        text = "" if problem else raw.decode("utf-8", "replace")  # missing or unreadable: no rules
        self._robots = Protego.parse(text)
        delay = self._robots.crawl_delay(ROBOTS_AGENT)
        if delay:
            self._delay = max(self._delay, float(delay))
        if not self._allowed(self.start):
            return f"{self.start}: robots.txt disallows crawling this page"
        return None

    def _allowed(self, url: str) -> bool:
        return self._robots is None or bool(self._robots.can_fetch(url, ROBOTS_AGENT))

    # -- sitemaps --------------------------------------------------------------------------

    def _sitemap_urls(self) -> list[str]:
        """In-scope page URLs from the sitemaps robots.txt names, else /sitemap.xml (and the prefix's)."""
        assert self.start is not None
        parts = urlsplit(self.start)
        origin = f"{parts.scheme}://{parts.netloc}"
        declared = list(self._robots.sitemaps) if self._robots is not None else []
        queue = deque(declared or dict.fromkeys([f"{self.prefix}sitemap.xml", f"{origin}/sitemap.xml"]))
        pages: list[str] = []
        fetched = 0
        while queue and fetched < MAX_SITEMAPS:
            sitemap = queue.popleft()
            fetched += 1
            locs, nested = self._read_sitemap(sitemap)
            queue.extend(n for n in nested if normalize_url(n))
            pages += [u for u in (normalize_url(loc) for loc in locs) if u and u.startswith(self.prefix)]
        return pages

    def _read_sitemap(self, url: str) -> tuple[list[str], list[str]]:
        """(page locations, nested sitemap locations); nothing when it is missing or unreadable."""
        try:
            self._wait_turn()
            assert self._client is not None
            with self._client.stream("GET", url) as resp:
                self._count(requests=1)
                if resp.status_code != 200:
                    return [], []
                raw, problem = self._read_body(resp)
        except httpx.HTTPError as exc:
            self.say(f"sitemap {url} not read ({_one_line(exc)})")
            return [], []
        if problem:
            self.say(f"sitemap {url} not read: {problem}")
            return [], []
        if raw[:2] == b"\x1f\x8b":
            try:
                raw = gzip.decompress(raw)[: self.options.max_bytes]
            except (OSError, EOFError):
                return [], []
        try:
            root = ET.fromstring(raw)  # expat >= 2.4 refuses entity-expansion bombs
        except ET.ParseError as exc:
            self.say(f"sitemap {url} not read: not valid XML ({exc})")
            return [], []
        locs = [(el.text or "").strip() for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "loc"]
        if root.tag.rsplit("}", 1)[-1] == "sitemapindex":
            return [], locs
        return locs, []

    # -- the store -------------------------------------------------------------------------

    def _stored_pages(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Pages already indexed under the prefix: URL -> (content hash, metadata)."""
        with self.store.connection() as conn:
            rows = conn.execute(
                "SELECT source, content_hash, metadata FROM documents WHERE left(source, length(%s)) = %s",
                (self.prefix, self.prefix),
            ).fetchall()
        return {source: (digest, meta or {}) for source, digest, meta in rows}

    def _update_metadata(self, url: str, values: dict[str, Any]) -> None:
        """Same bytes, new validators: keep them so the next run gets its 304."""
        from psycopg.types.json import Jsonb

        with self.store.connection() as conn:
            conn.execute("UPDATE documents SET metadata = metadata || %s WHERE source = %s", (Jsonb(values), url))

    def _count(self, **amounts: int) -> None:
        with self._stats_lock:
            for name, amount in amounts.items():
                setattr(self.stats, name, getattr(self.stats, name) + amount)


def split_sources(args: Sequence[str], store: Store, options: CrawlOptions, *, prune: bool = False,
                  log: Callable[[str], None] | None = None) -> tuple[list[str], list[Crawler]]:
    """Command-line arguments -> (file and folder paths, one crawler per URL)."""
    paths = [a for a in args if not is_url(a)]
    crawls = [Crawler(a, store, options, prune=prune, log=log) for a in dict.fromkeys(a for a in args if is_url(a))]
    return paths, crawls


def _raiser(message: str) -> Callable[[], LoadedDocument | None]:
    def load() -> LoadedDocument | None:
        raise IngestError(message)

    return load


def _one_line(exc: BaseException) -> str:
    return (" ".join(str(exc).split()) or type(exc).__name__)[:160]
