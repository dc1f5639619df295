"""Website ingest: crawl speed and what a re-sync costs, through the real command line.

A loopback copy of the docs-python pages (`../shared/data/docs-python/pages`, 80 pages, served by
tests/fakes/docs_site.py with an index, a sitemap, robots.txt, ETag and Last-Modified) is ingested
with `python -m assistant ingest http://127.0.0.1:PORT/docs/` into a fresh embedded PostgreSQL,
with an instant stand-in embedder (bench/_embedding_standin.py --instant) so the figures are the
crawl's own: fetching, extraction, chunking and writing. Runs: first crawl, a re-sync with nothing
changed, then one page changed and one deleted with `--prune`. For each: wall time, pages/s (the
crawl's own count and clock), requests, 200s, 304s and bytes the site sent.

Run: `nice -n 10 python -m bench.crawl [--delay 0.5] [--append]`.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._common import append_report, bench_env, bench_module, machine_summary, md_table, now_utc
from tests.fakes.docs_site import DocsSite

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT.parent / "shared" / "data" / "docs-python" / "pages"
SUMMARY = re.compile(r"crawl \S+: (\d+) pages .* in ([\d.]+) s \(([\d.]+) pages/s\)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, nargs="+", default=[0.0, 0.5],
                        help="politeness delays to run with (seconds between requests)")
    parser.add_argument("--append", action="store_true", help="append a section to docs/BENCHMARKS.md")
    args = parser.parse_args()
    started = now_utc()
    standin = subprocess.Popen(bench_module("_embedding_standin", "--instant"), cwd=ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    hf_url = standin.stdout.readline().strip()
    rows = []
    try:
        for delay in args.delay:
            with tempfile.TemporaryDirectory() as data, DocsSite(PAGES) as site:
                env = bench_env(Path(data), EMBEDDING_PROVIDER="hf",
                                HF_API_URL=f"{hf_url}/hf-inference/models/{{model}}/pipeline/feature-extraction")

                def run(label: str, *extra: str, delay: float = delay, env: dict = env) -> None:
                    site.clear()
                    start = time.monotonic()
                    done = subprocess.run([sys.executable, "-m", "assistant", "ingest", site.url, "--quiet",
                                           "--delay", str(delay), *extra], cwd=ROOT, env=env,
                                          capture_output=True, text=True, timeout=1800)
                    wall = time.monotonic() - start
                    match = SUMMARY.search(done.stderr)
                    if done.returncode not in (0, 1) or match is None:
                        raise SystemExit(f"{label}: exit {done.returncode}\n{done.stderr[-2000:]}")
                    pages, seconds, rate = int(match.group(1)), float(match.group(2)), float(match.group(3))
                    rows.append([f"{delay:g}", label, pages, f"{wall:.1f}", f"{seconds:.1f}", f"{rate:.1f}",
                                 site.count(), site.count(200), site.count(304), site.count(404),
                                 f"{site.bytes_sent() / 2**20:.2f}", done.stdout.strip().splitlines()[0]])
                    print(rows[-1], flush=True)

                run("first crawl")
                run("re-sync, nothing changed")
                page = "/docs/library-json.html"
                site.write(page, site.pages[page].replace(b"JSON encoder and decoder", b"JSON, edited"))
                site.remove("/docs/library-copy.html")
                run("re-sync, 1 changed + 1 deleted, --prune", "--prune")
    finally:
        standin.stdin.close()
        standin.wait(timeout=30)
    table = md_table(["delay s", "run", "pages", "wall s", "crawl s", "pages/s", "requests", "200", "304", "404",
                      "MB sent", "ingest summary"], rows)
    print(table)
    if args.append:
        body = (
            "Loopback copy of docs-python (80 pages + index; links between the flat copies do not resolve, so "
            "pages are found through the sitemap and the index), instant stand-in embedder, fresh embedded "
            "PostgreSQL, the CLI as a subprocess. `crawl s` and `pages/s` are the crawl's own summary line "
            "(fetch + extraction + chunking while the crawl runs; writing follows). Requests include "
            "robots.txt and the sitemap.\n\n" + table
        )
        append_report("Website ingest: crawl speed and re-sync cost (loopback docs-python)", body,
                      started=started, machine=machine_summary())


if __name__ == "__main__":
    main()
