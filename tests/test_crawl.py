"""Ingest a website: the crawler against a real HTTP server on loopback (tests/fakes/docs_site.py)
serving a copy of Python documentation pages with links, a sitemap, robots.txt and faults, into a
real PostgreSQL, with cheap stand-in vectors from the loopback embeddings server (this tests
plumbing, not retrieval quality)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.retrieval.crawl import Crawler, CrawlOptions, normalize_url, split_sources
from assistant.retrieval.embedders import make_embedder
from assistant.retrieval.ingest import IngestReport, ingest_paths
from assistant.retrieval.store import Store
from tests.fakes.docs_site import DocsSite
from tests.fakes.embedding_server import embedding_server  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
FAST = CrawlOptions(delay=0.0, timeout=2.0, concurrency=4)
PAGES = 7  # the index and six documentation pages (one of them only in the sitemap)


@pytest.fixture
def hf(embedding_server, settings):  # noqa: F811 - the fixture above
    embedding_server.hashed_vectors = True
    return embedding_server.settings("hf", database_url=settings.database_url, data_dir=settings.data_dir)


@pytest.fixture
def store(hf):
    s = Store.open(hf, announce=False)
    yield s
    s.close()


def crawl(url: str, store: Store, hf, options: CrawlOptions = FAST, *, prune: bool = False,
          lines: list[str] | None = None) -> tuple[IngestReport, Crawler]:
    say = (lines.append if lines is not None else lambda _: None)
    paths, crawlers = split_sources([url], store, options, prune=prune, log=say)
    report = ingest_paths(paths, store, make_embedder(hf), hf, progress=False, log=say,
                          sources=(page for c in crawlers for page in c.sources()))
    for c in crawlers:
        report.pruned += c.finish()
    return report, crawlers[0]


@pytest.mark.slow
def test_site_is_indexed_then_a_second_run_downloads_nothing(store, hf):
    with DocsSite() as site:
        first, crawler = crawl(site.url, store, hf)
        assert not first.failed, first.failed
        assert sorted(first.added) == sorted([site.url, *(site.origin + p for p in site.pages)])
        assert len(first.added) == PAGES
        assert f"{site.url}library/secrets.html" in first.added  # found through the sitemap only
        assert site.count(prefix="/docs/private/") == 0
        copy_requests = [p for _, p, _, _ in site.requests if p == "/docs/library/copy.html"]
        assert copy_requests == ["/docs/library/copy.html"]  # #fragment and ?query: one page, one request
        with store.connection() as conn:
            url, title, meta = conn.execute("SELECT url, title, metadata FROM documents WHERE source = %s",
                                            (f"{site.url}library/glob.html",)).fetchone()
        assert url == f"{site.url}library/glob.html" and title.startswith("glob")
        assert meta["etag"] and meta["last_modified"] and meta["site"] == site.url

        site.clear()
        again, crawler = crawl(site.url, store, hf)
        assert len(again.unchanged) == PAGES and not again.added and not again.updated and not again.failed
        assert crawler.stats.not_modified == PAGES and crawler.stats.downloaded == 0
        assert site.count(200, "/docs/library/") == site.count(200, "/docs/howto/") == 0  # nothing re-downloaded
        page_requests = [p for _, p, s, _ in site.requests if s in (200, 304) and p.endswith(".html")]
        assert len(page_requests) == PAGES - 1 and len(set(page_requests)) == PAGES - 1  # each page once

        site.write("/docs/library/glob.html", site.pages["/docs/library/glob.html"].replace(
            b"Unix style pathname pattern expansion", b"Pattern expansion, rewritten"))
        site.remove("/docs/library/shelve.html")
        lines: list[str] = []
        third, crawler = crawl(site.url, store, hf, lines=lines)
        assert sorted(third.updated) == [site.url, f"{site.url}library/glob.html"]  # the index lost a link
        assert f"{site.url}library/shelve.html" in store.sources()  # gone, but no --prune
        assert any("--prune" in line for line in lines)
        pruned, _ = crawl(site.url, store, hf, prune=True)
        assert pruned.pruned == [f"{site.url}library/shelve.html"]
        assert f"{site.url}library/shelve.html" not in store.sources() and len(store.sources()) == PAGES - 1


@pytest.mark.slow
def test_prune_touches_only_that_site(store, hf, tmp_path):
    local = tmp_path / "notes.md"
    local.write_text("# Notes\n\nLocal notes about the backup schedule, kept for the team.\n")
    with DocsSite() as site, DocsSite() as other:
        ingest_paths([local], store, make_embedder(hf), hf, progress=False, log=lambda _: None)
        crawl(site.url, store, hf)
        crawl(other.url + "library/", store, hf)
        site.remove("/docs/library/copy.html")
        other.remove("/docs/library/copy.html")
        report, _ = crawl(site.url, store, hf, prune=True)
        assert report.pruned == [f"{site.url}library/copy.html"]
        sources = store.sources()
        assert f"{other.url}library/copy.html" in sources and local.resolve().as_posix() in sources


@pytest.mark.slow
def test_every_fault_is_one_line_and_the_crawl_goes_on(store, hf):
    with DocsSite(faults=True, slow_seconds=3.0) as site:
        lines: list[str] = []
        options = CrawlOptions(delay=0.0, timeout=1.0, concurrency=4, max_bytes=2 * 2**20)
        report, crawler = crawl(site.url, store, hf, options, lines=lines)
        failed = {url.rsplit("/", 1)[-1]: reason for url, reason in report.failed}
        assert set(failed) == {"error.html", "loop-a.html", "big.html", "stream.html", "slow.html"}, failed
        assert "HTTP 500" in failed["error.html"]
        assert "redirect loop" in failed["loop-a.html"]
        assert "not downloaded" in failed["big.html"] and "download stopped" in failed["stream.html"]
        assert "timeout" in failed["slow.html"] or "too slow" in failed["slow.html"]
        assert all("\n" not in reason for reason in failed.values())
        said = "\n".join(lines)
        assert "away.html: redirects to http://elsewhere.invalid/docs/" in said and "not followed" in said
        assert "data: not an HTML page (application/json)" in said
        assert "robots.txt disallows" in said
        assert site.count(prefix="/docs/private/") == 0
        assert len(report.added) == PAGES  # every good page made it; moved.html is glob.html, once
        assert f"{site.url}faults/moved.html" not in store.sources()
        sent_big = [b for _, p, _, b in site.requests if p == "/docs/faults/stream.html"]
        assert sent_big and sent_big[0] < 50 * 2**20  # the stream was cut, not read to the end
        assert sorted(u.rsplit("/", 1)[-1] for u in crawler.stats.gone if "/faults/" in u) == [
            "gone.html", "missing.html"]


@pytest.mark.parametrize(("arg", "needle"), [
    ("file:///etc/passwd", "file:// URLs are not crawled"),
    ("ftp://example.com/docs/", "only http:// and https://"),
    ("chrome://settings/", "only http:// and https://"),
    ("http://", "not a valid URL"),
    ("http://[::1/docs/", "not a valid URL"),
    ("http://127.0.0.1:99999/docs/", "not a valid URL"),
])
def test_refused_urls_are_one_line_each(store, hf, arg, needle):
    report, _ = crawl(arg, store, hf)
    assert len(report.failed) == 1 and needle in report.failed[0][1] and "\n" not in report.failed[0][1]


@pytest.mark.slow
def test_robots_disallow_and_robots_errors(store, hf):
    with DocsSite(robots="User-agent: *\nDisallow: /docs/\n") as site:
        report, _ = crawl(site.url, store, hf)
        assert "robots.txt disallows" in report.failed[0][1] and site.count(prefix="/docs/") == 0
    with DocsSite(robots="User-agent: doc-assistant-crawler\nDisallow: /docs/howto/\nCrawl-delay: 0\n") as site:
        report, crawler = crawl(site.url, store, hf)
        assert len(report.added) == PAGES - 1 and site.count(prefix="/docs/howto/") == 0
        assert crawler.stats.disallowed == [f"{site.url}howto/sorting.html"]


@pytest.mark.slow
def test_robots_txt_server_error_means_do_not_crawl(store, hf):
    with DocsSite(robots_status=503) as site:
        report, _ = crawl(site.url, store, hf)
        assert "robots.txt answered HTTP 503; not crawling" in report.failed[0][1]
        assert site.count(prefix="/docs/") == 0
    with DocsSite(robots_status=404) as site:  # no robots.txt: everything allowed
        report, _ = crawl(site.url, store, hf)
        assert len(report.added) == PAGES


@pytest.mark.slow
def test_start_page_redirecting_off_site_is_an_error(store, hf):
    with DocsSite(faults=True) as site:
        report, _ = crawl(site.url + "faults/away.html", store, hf)
        assert len(report.failed) == 1 and "not followed" in report.failed[0][1]


@pytest.mark.slow
def test_unreachable_site_and_missing_start_page(store, hf):
    with DocsSite() as site:
        port = site.origin.rsplit(":", 1)[1]
    report, _ = crawl(f"http://127.0.0.1:{port}/docs/", store, hf)  # the server is gone
    assert "cannot fetch" in report.failed[0][1]
    with DocsSite() as site:
        report, _ = crawl(site.url + "nothing-here/", store, hf)
        assert "HTTP 404" in report.failed[0][1]


@pytest.mark.slow
def test_max_pages_limits_the_crawl(store, hf):
    with DocsSite() as site:
        lines: list[str] = []
        report, crawler = crawl(site.url, store, hf, CrawlOptions(delay=0.0, max_pages=3), lines=lines)
        assert len(report.added) == 3 and crawler.stats.pages == 3
        assert any("stopped at --max-pages 3" in line for line in lines)


@pytest.mark.slow
def test_polite_delay_spaces_requests(store, hf):
    with DocsSite() as site:
        _, crawler = crawl(site.url, store, hf, CrawlOptions(delay=0.2, concurrency=4, max_pages=4))
        assert crawler.stats.seconds >= 0.2 * (crawler.stats.requests - 1)


def test_normalize_url_drops_fragment_and_query():
    assert normalize_url("HTTP://Example.COM:80/a//b.html?x=1#y") == "http://example.com/a/b.html"
    assert normalize_url("../c.html#top", base="https://example.com/docs/a/b.html") == "https://example.com/docs/c.html"
    assert normalize_url("https://example.com:8443") == "https://example.com:8443/"
    for bad in ("mailto:x@example.com", "javascript:alert(1)", "http://[::1", "//"):
        assert normalize_url(bad, base="https://example.com/") is None or bad == "//"


@pytest.mark.slow
def test_cli_ingests_a_site_and_resyncs(embedding_server, database_url, tmp_path):  # noqa: F811
    embedding_server.hashed_vectors = True
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "EMBEDDING_", "HF_"))}
    env.update({"DATABASE_URL": database_url, "ASSISTANT_DATA_DIR": str(tmp_path / "d"),
                "EMBEDDING_PROVIDER": "hf", "HF_API_URL": embedding_server.hf_url})
    with DocsSite() as site:
        def run(*extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "assistant", "ingest", site.url, "--quiet", "--delay", "0",
                                   *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)

        first = run()
        assert first.returncode == 0, first.stderr
        assert f"{PAGES} added" in first.stdout and "Traceback" not in first.stderr
        second = run()
        assert f"{PAGES} unchanged" in second.stdout and f"{PAGES} not modified" in second.stderr
        site.remove("/docs/library/fnmatch.html")
        third = run("--prune")
        assert "1 pruned" in third.stdout and "pruned http" in third.stderr
        bad = subprocess.run([sys.executable, "-m", "assistant", "ingest", "file:///etc", "--quiet"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=120)
        assert bad.returncode == 1 and "file:// URLs are not crawled" in bad.stderr and "Traceback" not in bad.stderr
