"""HTTP for one crawl: politeness, capped downloads, robots.txt and sitemaps.

One host gets one request per `delay` seconds (or its robots.txt Crawl-delay) however many threads
ask; bodies are read under a size cap and a deadline; robots.txt is parsed with Protego (RFC 9309:
a 5xx robots.txt means "do not crawl"). Sitemaps are parsed with the standard library:
ultimate-sitemap-parser would bring `requests` and its own fetching, outside these caps and this client.
"""

from __future__ import annotations

import gzip
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from assistant.retrieval.crawl_urls import normalize_url
from assistant.retrieval.loaders.document import one_line

if TYPE_CHECKING:
    from assistant.retrieval.crawl import CrawlOptions

USER_AGENT = "doc-assistant-crawler/1.0 (+https://github.com/; respects robots.txt)"
ROBOTS_AGENT = "doc-assistant-crawler"
MAX_SITEMAPS = 50


class SiteClient:
    """The crawl's HTTP side; `client` is set while a crawl runs, `count` adds to its statistics."""

    def __init__(self, options: CrawlOptions, count: Callable[..., None], say: Callable[[str], None]) -> None:
        self.options = options
        self.count = count
        self.say = say
        self.client: httpx.Client | None = None
        self.robots: Any = None
        self.delay = options.delay
        self._next_slot = 0.0
        self._slot_lock = threading.Lock()

    def new_client(self) -> httpx.Client:
        return httpx.Client(
            timeout=httpx.Timeout(self.options.timeout), follow_redirects=False,
            headers={"User-Agent": USER_AGENT}, limits=httpx.Limits(max_connections=self.options.concurrency),
        )

    @contextmanager
    def get(self, url: str, headers: dict[str, str] | None = None) -> Iterator[httpx.Response]:
        """A streamed GET, in this host's turn, counted as one request."""
        self.wait_turn()
        assert self.client is not None
        with self.client.stream("GET", url, headers=headers) as resp:
            self.count(requests=1)
            yield resp

    def wait_turn(self) -> None:
        """One request per `delay` seconds to this host, whichever thread asks."""
        with self._slot_lock:
            now = time.monotonic()
            slot = max(now, self._next_slot)
            self._next_slot = slot + self.delay
        if slot > now:
            time.sleep(slot - now)

    def read_body(self, resp: httpx.Response) -> tuple[bytes, str | None]:
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

    # -- robots.txt ------------------------------------------------------------------------

    def read_robots(self, start: str) -> str | None:
        """Fetch and parse robots.txt; a one-line reason when the start page may not be crawled."""
        from protego import Protego

        parts = urlsplit(start)
        robots_url = f"{parts.scheme}://{parts.netloc}/robots.txt"
        try:
            with self.get(robots_url) as resp:
                raw, problem = self.read_body(resp) if resp.status_code == 200 else (b"", None)
        except httpx.HTTPError as exc:
            return f"{start}: cannot fetch {robots_url} ({one_line(exc)}); check the address"
        if resp.status_code >= 500:  # RFC 9309: the site may be down; assume everything is disallowed
            return f"{start}: {robots_url} answered HTTP {resp.status_code}; not crawling (try again later)"
        text = "" if problem else raw.decode("utf-8", "replace")  # missing or unreadable: no rules
        self.robots = Protego.parse(text)
        delay = self.robots.crawl_delay(ROBOTS_AGENT)
        if delay:
            self.delay = max(self.delay, float(delay))
        if not self.allowed(start):
            return f"{start}: robots.txt disallows crawling this page"
        return None

    def allowed(self, url: str) -> bool:
        return self.robots is None or bool(self.robots.can_fetch(url, ROBOTS_AGENT))

    # -- sitemaps --------------------------------------------------------------------------

    def sitemap_urls(self, start: str, prefix: str) -> list[str]:
        """In-scope page URLs from the sitemaps robots.txt names, else /sitemap.xml (and the prefix's)."""
        parts = urlsplit(start)
        origin = f"{parts.scheme}://{parts.netloc}"
        declared = list(self.robots.sitemaps) if self.robots is not None else []
        queue = deque(declared or dict.fromkeys([f"{prefix}sitemap.xml", f"{origin}/sitemap.xml"]))
        pages: list[str] = []
        fetched = 0
        while queue and fetched < MAX_SITEMAPS:
            sitemap = queue.popleft()
            fetched += 1
            locs, nested = self._read_sitemap(sitemap)
            queue.extend(n for n in nested if normalize_url(n))
            pages += [u for u in (normalize_url(loc) for loc in locs) if u and u.startswith(prefix)]
        return pages

    def _read_sitemap(self, url: str) -> tuple[list[str], list[str]]:
        """(page locations, nested sitemap locations); nothing when it is missing or unreadable."""
        try:
            with self.get(url) as resp:
                if resp.status_code != 200:
                    return [], []
                raw, problem = self.read_body(resp)
        except httpx.HTTPError as exc:
            self.say(f"sitemap {url} not read ({one_line(exc)})")
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
