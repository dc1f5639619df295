"""The crawler's URL rules: which arguments are URLs, a page's key, the part of a site a crawl
stays in, and the links a page gives (link discovery, standard library only)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit, urlunsplit

# Links to these are never pages: not worth a request.
_ASSET = re.compile(
    r"\.(?:png|jpe?g|gif|svg|webp|ico|css|js|mjs|map|json|xml|txt|pdf|zip|gz|tgz|bz2|xz|tar|whl|egg|exe|dmg|"
    r"mp[34]|webm|woff2?|ttf|eot|otf|epub|mobi|rst|md)$",
    re.IGNORECASE,
)


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


def is_asset(url: str) -> bool:
    """Does the URL name an image, stylesheet, archive or other file that is never a page?"""
    return _ASSET.search(urlsplit(url).path) is not None


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


def page_links(text: str, page_url: str, prefix: str) -> list[str]:
    """The page's followable links under `prefix`, normalized, once each, in document order."""
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
        if url and url.startswith(prefix) and url not in out:
            out.append(url)
    return out
