"""The command line's arguments: one sub-parser per command, and usage errors `--json` can report."""

from __future__ import annotations

import argparse

from assistant.retrieval.filters import DOCUMENT_TYPES
from assistant.retrieval.types import SEARCH_MODES

MAX_HITS = 100  # search -k: the Retriever's own limit


class UsageError(Exception):
    """Bad command-line usage (argparse's complaint), raised instead of exiting so --json can report it."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(self, message)


def _hits(value: str) -> int:
    """`-k`: a whole number from 1 to MAX_HITS."""
    try:
        k = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 1 <= k <= MAX_HITS:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_HITS}, not {k}")
    return k


def build_parser() -> argparse.ArgumentParser:
    """`python -m assistant`'s parser (raises UsageError instead of exiting)."""
    p = _Parser(prog="python -m assistant", description="Doc Assistant: chat with your documents.")
    sub = p.add_subparsers(dest="command", required=True)

    ing = sub.add_parser("ingest", help="index files, folders (.md .txt .html .htm .pdf) and websites (URL)")
    ing.add_argument("paths", nargs="+", metavar="PATH_OR_URL")
    ing.add_argument("--prune", action="store_true",
                     help="remove documents under PATH whose files are gone, or pages of URL the site says are gone")
    ing.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_crawl_options(ing)
    ing.add_argument("--yes", "-y", action="store_true",
                     help="do not ask for confirmation, however long the estimate (INGEST_CONFIRM_MINUTES)")
    ing.add_argument("--dry-run", action="store_true",
                     help="print the plan (documents, chunks, estimated time) and write nothing")

    se = sub.add_parser("search", help="retrieval only: show the hits for a question")
    se.add_argument("query")
    se.add_argument("-k", type=_hits, default=None, metavar="K",
                    help=f"number of hits, 1-{MAX_HITS} (default TOP_K)")
    se.add_argument("--mode", choices=SEARCH_MODES, default="hybrid")
    se.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                    help=f"source=PREFIX, document_id=1,2, type={'|'.join(DOCUMENT_TYPES)}, tag=NAME,"
                         " meta.KEY=VALUE (repeatable; all must hold)")
    se.add_argument("--json", action="store_true",
                    help='print one JSON object (errors too: {"error": ..., "kind": ...}, exit code non-zero)')

    ev = sub.add_parser("eval", help="score retrieval on your questions: hit@k and MRR per mode, and the misses")
    ev.add_argument("questions", metavar="QUESTIONS.jsonl",
                    help='one JSON object a line: {"question": "...", "expected": ["file.md", ...]}')
    ev.add_argument("--k", action="append", default=None, metavar="K",
                    help="cut-offs for hit@k, e.g. --k 5 or --k 1,3,5,10 (the default)")
    ev.add_argument("--mode", choices=("all", *SEARCH_MODES), default="all", help="search mode(s) to score")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--answers", action="store_true",
                    help="score the chat's answers instead: ask each question (or conversation, \"turns\": [...])"
                         " through the chat pipeline and check that the first citation is an expected document")
    ev.add_argument("--extractive", action="store_true",
                    help="with --answers: retrieval-only answers even when an LLM is configured")

    db = sub.add_parser("db", help="database information")
    db.add_argument("action", choices=["status"])
    db.add_argument("--json", action="store_true")

    sv = sub.add_parser("serve", help="start the chat UI (chainlit run assistant/app.py)")
    sv.add_argument("--host", default=None)  # unset: HOST (Settings)
    sv.add_argument("--port", default=None)  # unset: PORT (Settings)
    sv.add_argument("--headless", action="store_true", help="do not open a browser")

    hp = sub.add_parser("hash-password", help="make an ASSISTANT_USERS entry (asks for the password)")
    hp.add_argument("user", help="the login name")

    cf = sub.add_parser("config", help="show the settings as read from the environment and .env (secrets hidden)")
    cf.add_argument("--markdown", action="store_true", help="print the README's configuration table instead")
    return p


def _add_crawl_options(ing: argparse.ArgumentParser) -> None:
    from assistant.retrieval.crawl import CrawlOptions

    def bounded(kind: type, low: float, high: float):
        def parse(text: str) -> float:
            value = kind(text)
            if not low <= value <= high:
                raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
            return value
        return parse

    default = CrawlOptions()
    ing.add_argument("--max-pages", type=bounded(int, 1, 100_000), default=default.max_pages,
                     help=f"URL: at most this many pages (default {default.max_pages})")
    ing.add_argument("--concurrency", type=bounded(int, 1, 16), default=default.concurrency,
                     help=f"URL: requests at once (default {default.concurrency})")
    ing.add_argument("--delay", type=bounded(float, 0, 60), default=default.delay,
                     help=f"URL: seconds between requests to the site (default {default.delay:g};"
                          " a larger robots.txt Crawl-delay wins)")


