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

This module is the crawl itself (the frontier, conditional requests, pages to documents, the
store); `crawl_fetch` is its HTTP side (politeness, capped bodies, robots.txt, sitemaps) and
`crawl_urls` its URL rules and link discovery.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from assistant.retrieval.crawl_fetch import SiteClient
from assistant.retrieval.crawl_urls import is_asset, is_url, normalize_url, page_links, refusal, site_prefix
from assistant.retrieval.errors import IngestError
from assistant.retrieval.ingest_sources import Source
from assistant.retrieval.loaders import html as html_format
from assistant.retrieval.loaders import load_html
from assistant.retrieval.loaders.document import one_line
from assistant.retrieval.types import LoadedDocument

if TYPE_CHECKING:
    from assistant.retrieval.store import Store

__all__ = ["CrawlOptions", "CrawlStats", "Crawler", "Source", "is_url", "normalize_url", "refusal", "site_prefix",
           "split_sources"]


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
        self.http = SiteClient(self.options, self._count, self.say)
        self._client = client  # a caller's client (kept open), else one per crawl
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
        client = self._client or self.http.new_client()
        try:
            self.http.client = client
            self._stored = self._stored_pages()
            assert self.start is not None  # refusal() passed
            blocked = self.http.read_robots(self.start)
            if blocked:
                yield self.start, _raiser(blocked)
                return
            yield from self._crawl()
        finally:
            if client is not self._client:
                client.close()
            self.http.client = None
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
        seeds = [self.start, *self.http.sitemap_urls(self.start, self.prefix), *sorted(self._stored)]
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
        if url in seen or not url.startswith(self.prefix) or is_asset(url):
            return
        seen.add(url)
        if not self.http.allowed(url):
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
            return _Outcome(url, "failed", f"cannot fetch ({one_line(exc)})")

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
            with self.http.get(current, headers) as resp:
                if resp.status_code in (301, 302, 303, 307, 308):  # httpx counts 304 as a redirect too
                    location = resp.headers.get("location", "")
                    target = normalize_url(location, base=current)
                    if target is None or not target.startswith(self.prefix):
                        return _Outcome(url, "skipped", f"redirects to {location or '(nowhere)'}, outside"
                                        f" {self.prefix}; not followed")
                    if target in hops:
                        return _Outcome(url, "failed", f"redirect loop ({' -> '.join([*hops, target])})")
                    if not self.http.allowed(target):
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
        if ctype not in html_format.MIME_TYPES:
            return _Outcome(url, "skipped", f"not an HTML page ({ctype or 'no content type'})")
        raw, problem = self.http.read_body(resp)
        if problem:
            return _Outcome(url, "failed", problem)
        self._count(downloaded=1, bytes=len(raw))
        validators = {"etag": resp.headers.get("etag"), "last_modified": resp.headers.get("last-modified")}
        text_for_links = raw.decode(resp.charset_encoding or "utf-8", "replace")
        links = page_links(text_for_links, url, self.prefix)
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
