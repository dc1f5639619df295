"""Command line: `python -m assistant ingest|search|eval|db|serve|hash-password`.

`search` is the retrieval-only debug mode: it imports nothing from the chat stack, so it starts
fast and small, and prints how each hit was found (vector rank and similarity, text rank, fused
score) with the time spent embedding and searching. User errors print one line and exit 1
(2 for bad usage); tracebacks are for bugs only. With `--json`, an error is a JSON object on
stdout instead, `{"error": "...", "kind": "database"}`, with the same exit code, so a script
always gets JSON. Libraries' own log lines (pypdf's complaints about a damaged PDF, say) go to
ASSISTANT_DATA_DIR/assistant.log, not to the terminal, where each problem gets one line of ours.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.config import Settings
from assistant.retrieval.errors import AssistantError, QueryError
from assistant.retrieval.filters import DOCUMENT_TYPES
from assistant.retrieval.types import SEARCH_MODES, SearchResult

if TYPE_CHECKING:
    from assistant.retrieval.ingest import IngestPlan

APP_PATH = Path(__file__).resolve().parent / "app.py"
MAX_HITS = 100  # search -k: the Retriever's own limit
LOG_FILE = "assistant.log"  # under ASSISTANT_DATA_DIR: library warnings of command-line runs


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


def _parser() -> argparse.ArgumentParser:
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
    sv.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    sv.add_argument("--port", default=os.environ.get("PORT", "8000"))
    sv.add_argument("--headless", action="store_true", help="do not open a browser")

    hp = sub.add_parser("hash-password", help="make an ASSISTANT_USERS entry (asks for the password)")
    hp.add_argument("user", help="the login name")
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


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in argv
    try:
        args = _parser().parse_args(argv)
    except UsageError as err:
        if as_json:
            return _fail(f"{err.parser.prog}: {err}", 2, True, kind="usage")
        err.parser.print_usage(sys.stderr)  # what argparse itself prints
        print(f"{err.parser.prog}: error: {err}", file=sys.stderr)
        return 2
    # The connection pool warns (in two lines) at every reconnect attempt; the command line reports
    # a lost database once, in its own words (the chat server keeps those warnings in its log).
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    as_json = bool(getattr(args, "json", False))
    try:
        if args.command == "hash-password":  # needs no (and must not fail on a broken) configuration
            return cmd_hash_password(args)
        settings = Settings.from_env()
        _log_to_file(settings)
        if args.command == "ingest":
            return cmd_ingest(settings, args)
        if args.command == "search":
            return cmd_search(settings, args)
        if args.command == "eval":
            return cmd_eval(settings, args)
        if args.command == "db":
            return cmd_db(settings, args)
        return cmd_serve(settings, args)
    except QueryError as err:
        return _fail(err, 2, as_json)
    except AssistantError as err:
        return _fail(err, 1, as_json)
    except KeyboardInterrupt:
        return _fail("interrupted", 130, as_json, kind="interrupted")


def error_kind(err: BaseException) -> str:
    """`DatabaseError` -> "database", `ModelMismatchError` -> "model_mismatch": for --json errors."""
    name = type(err).__name__.removesuffix("Error") or "error"
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _fail(err: BaseException | str, code: int, as_json: bool, *, kind: str | None = None) -> int:
    """Report an error in one line (stderr), or as `{"error", "kind"}` on stdout with --json; return `code`."""
    message = " ".join(str(err).split())
    if as_json:
        print(json.dumps({"error": message, "kind": kind or error_kind(err)}, ensure_ascii=False))
    else:
        print(message if code == 130 else f"error: {message}", file=sys.stderr)
    return code


_file_log: logging.Handler | None = None


def _log_to_file(settings: Settings) -> None:
    """Send log records (libraries' warnings included) to ASSISTANT_DATA_DIR/assistant.log instead of
    the terminal: Python prints records nobody handles on stderr, e.g. pypdf's "incorrect startxref
    pointer" next to our own one-line report of the same file. Best effort: no folder, no file."""
    global _file_log
    root = logging.getLogger()
    if _file_log is not None:  # a second run in one process (tests): one handler, the current folder
        root.removeHandler(_file_log)
        _file_log.close()
        _file_log = None
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(settings.data_dir / LOG_FILE, encoding="utf-8", delay=True)
    except OSError:
        handler = logging.NullHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    _file_log = handler


def cmd_ingest(settings: Settings, args: argparse.Namespace) -> int:
    from assistant.retrieval.crawl import CrawlOptions, split_sources
    from assistant.retrieval.embedders import make_embedder
    from assistant.retrieval.ingest import IngestInterrupted, ingest_paths
    from assistant.retrieval.local_passages import available_cpus
    from assistant.retrieval.store import Store

    workers = settings.ingest_workers or available_cpus()
    store = Store.open(settings)
    try:
        embedder = make_embedder(settings)
        confirm = None if args.yes else _confirmer(settings.ingest_confirm_minutes)
        options = CrawlOptions(max_pages=args.max_pages, concurrency=args.concurrency, delay=args.delay)
        paths, crawls = split_sources(args.paths, store, options, prune=args.prune)
        report = ingest_paths(paths, store, embedder, settings, prune=args.prune, progress=not args.quiet,
                              workers=workers, confirm=confirm, dry_run=args.dry_run,
                              sources=(page for crawl in crawls for page in crawl.sources()))
        if not args.dry_run and not report.cancelled:
            for crawl in crawls:
                report.pruned += crawl.finish()
    except IngestInterrupted as stop:
        written = len(stop.report.added) + len(stop.report.updated)
        done = f"{written} documents were written completely before it" if written else "nothing was written"
        print(f"interrupted: {done}; run the same command again to finish (unchanged files are skipped)",
              file=sys.stderr)
        return 130
    finally:
        store.close()
    if args.dry_run and report.plan is not None:
        print(report.plan.headline())
        for line in report.plan.details():
            print(line)
    print(report.summary())  # each failure had its one line (stderr) while it happened
    nothing = not (report.plan and (report.plan.documents or report.plan.unchanged or report.plan.prune))
    if nothing or not report.ok:
        return 1
    return 1 if report.cancelled and not args.dry_run else 0


def _confirmer(threshold_minutes: float) -> Callable[[IngestPlan], bool]:
    """Ask on a terminal before a run estimated above the threshold; proceed elsewhere."""

    def confirm(plan: IngestPlan) -> bool:
        seconds = plan.seconds
        if not threshold_minutes or seconds is None or seconds <= threshold_minutes * 60:
            return True
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            print(f"(the estimate is above INGEST_CONFIRM_MINUTES={threshold_minutes:g}; not a terminal,"
                  " so going ahead; --dry-run shows the plan only)", file=sys.stderr)
            return True
        try:
            sys.stderr.write(f"This will take {plan.estimate()}. Continue? [y/N] ")
            sys.stderr.flush()
            answer = _read_line()
        except KeyboardInterrupt:
            sys.stderr.write("\n")
            raise
        if not answer:  # end of input (Ctrl-D)
            sys.stderr.write("\n")
        if answer.strip().lower() in ("y", "yes"):
            return True
        print("Not started: nothing was written (--yes skips this question).", file=sys.stderr)
        return False

    return confirm


def _read_line() -> str:
    """A line from the terminal, waking every 0.2 s: Ctrl-C's signal may be delivered to another
    thread (the embedding processes' queue feeder), and a blocking read would never see it."""
    import select

    while not select.select([sys.stdin], [], [], 0.2)[0]:
        pass
    return sys.stdin.readline()


def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    from assistant.retrieval import open_retriever

    if not args.query.strip():
        raise QueryError("The question is empty: type a few words to search for")
    from assistant.retrieval.filters import parse_filters

    parse_filters(args.filter)  # a bad filter is refused before the database is opened
    retriever = open_retriever(settings, announce=not args.json)
    try:
        result = retriever.search(args.query, k=args.k, mode=args.mode, filters=args.filter)
    finally:
        retriever.store.close()
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        print(format_result(result))
    return 0


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    """Score retrieval on a file of questions with known answers (see assistant/retrieval/evaluate.py)."""
    from assistant.retrieval import open_retriever
    from assistant.retrieval.evaluate import EVAL_MODES, evaluate, format_report, load_questions, parse_ks

    if args.answers:
        return cmd_eval_answers(settings, args)
    ks = parse_ks(args.k)
    questions = load_questions(args.questions)  # bad input fails before the database is opened
    retriever = open_retriever(settings, announce=not args.json)
    try:
        modes = EVAL_MODES if args.mode == "all" else (args.mode,)
        report = evaluate(retriever, questions, ks=ks, modes=modes, path=args.questions)
    finally:
        retriever.store.close()
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        print(format_report(report))
    return 0


def cmd_eval_answers(settings: Settings, args: argparse.Namespace) -> int:
    """First-citation accuracy of the chat's answers beside retrieval hit@1 (assistant/chat/answer_eval.py)."""
    import asyncio
    import dataclasses

    from assistant.chat.answer_eval import AnswerReport, evaluate_answers, format_answer_report, load_answer_questions
    from assistant.chat.pipeline import ChatPipeline
    from assistant.retrieval import open_retriever

    questions = load_answer_questions(args.questions)  # bad input fails before the database is opened
    if args.extractive:
        settings = dataclasses.replace(settings, openai_api_key=None)
    retriever = open_retriever(settings, announce=not args.json)

    async def run() -> AnswerReport:
        pipeline = ChatPipeline(retriever, settings, titles=retriever.store)
        try:
            return await evaluate_answers(pipeline, questions, path=args.questions)
        finally:
            await pipeline.aclose()

    try:
        report = asyncio.run(run())
    finally:
        retriever.store.close()
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        print(format_answer_report(report))
    return 0


def format_result(result: SearchResult, width: int | None = None) -> str:
    """Human-readable hits: how each was found, where it is, and a snippet."""
    width = width or min(shutil.get_terminal_size((100, 20)).columns, 120)
    lines = [f"{len(result.hits)} hits for {result.query!r} ({result.mode})"]
    if result.degraded:
        lines.append(f"DEGRADED: full-text only ({result.degraded_reason})")
    lines += [f"note: {n}" for n in result.notices]
    if result.relevant is not None:
        lines.append(f"relevant: {'yes' if result.relevant else 'NO'} ({result.relevance_reason})")
    for hit in result.hits:
        vec = f"vec #{hit.vector_rank} sim {hit.similarity:.3f}" if hit.vector_rank else (
            f"vec -    sim {hit.similarity:.3f}" if hit.similarity is not None else "vec -")
        txt = f"text #{hit.text_rank} ({hit.text_score:.3f})" if hit.text_rank else "text -"
        lines.append("")
        lines.append(f"{hit.rank:>2}. score {hit.score:.4f} | {vec} | {txt}")
        where = hit.title + (f" > {hit.heading}" if hit.heading else "")
        lines.append(f"    {where}")
        lines.append(f"    {hit.url or hit.source}" + (f" (page {hit.page})" if hit.page else ""))
        snippet = " ".join(hit.text.split())
        snippet = textwrap.shorten(snippet, width=min(3 * (width - 6), 300), placeholder=" ...")
        lines += textwrap.wrap(snippet, width=width - 4, initial_indent="    ", subsequent_indent="    ")
    if not result.hits:
        lines.append("(no hits: try other words, fewer filters, or ingest more documents)")
    t = result.timings_ms
    lines.append("")
    shown = [name for name in ("embed_ms", "search_ms", "total_ms") if name in t]
    lines.append("time: " + " | ".join(f"{name.removesuffix('_ms')} {t[name]:.1f} ms" for name in shown))
    return "\n".join(lines)


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    from assistant.retrieval.store import Store

    store = Store.open(settings, announce=not args.json)
    try:
        status = store.status()
    finally:
        store.close()
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"database:        {status['database']}" + (" (embedded)" if status["embedded"] else ""))
    print(f"server:          PostgreSQL {status['server_version']}, pgvector {status['pgvector_version']},"
          f" size {status['database_size']}")
    print(f"documents:       {status['documents']}")
    print(f"chunks:          {status['chunks']} ({status['tokens']:,} tokens)")
    print(f"embedding model: {status['embedding_model']} ({status['embedding_dim']} dims);"
          f" provider {settings.embedding_provider}")
    ft = status["fulltext"]
    print(f"full-text:       '{status['text_search_config']}' configuration; BM25 k1={ft['k1']} b={ft['b']} over"
          f" {ft['chunks']} chunks, {ft['terms']:,} distinct terms, average length {ft['average_length']} tokens")
    cal = status.get("relevance")
    print("relevance:       " + ("not calibrated yet (the first search does it)" if cal is None else
          f"calibrated on {cal['probes']} off-topic probes: similarity {cal['peak_mean']:.3f}"
          f" ± {cal['peak_sd']:.3f}, lead {cal['lift_mean']:.3f} ± {cal['lift_sd']:.3f}"
          + ("" if cal["current"] else " (stale: the documents changed since; the next search redoes it)")))
    h = status["hnsw"]
    print(f"hnsw index:      m={h['m']} ef_construction={h['ef_construction']} ef_search={h['ef_search']}")
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Print `NAME:HASH` for ASSISTANT_USERS; the password is typed twice, or read from a pipe."""
    import getpass

    from assistant.auth import NAME, hash_password

    if not NAME.match(args.user):
        raise QueryError(f"{args.user!r} cannot be a login name: use 1-64 characters without spaces, ':' or ','")
    if sys.stdin.isatty():
        password = getpass.getpass(f"Password for {args.user}: ")
        if getpass.getpass("Again: ") != password:
            raise QueryError("The two passwords differ; nothing was printed")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        encoded = hash_password(password)
    except ValueError as err:
        raise QueryError(f"Cannot use that password: {err}") from None
    print(f"{args.user}:{encoded}")
    print("Add this line to ASSISTANT_USERS (entries separated by commas).", file=sys.stderr)
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Prepare the database (and sample corpus) in this terminal, then hand over to Chainlit."""
    from assistant.auth import check_login_settings
    from assistant.retrieval import open_retriever

    check_login_settings(settings.users, settings.allowed_origins)  # before the database, not after
    retriever = open_retriever(settings)
    print(f"Database ready ({retriever.store.document_count()} documents). Starting the chat on"
          f" http://{args.host}:{args.port}", file=sys.stderr)
    retriever.store.close()
    cmd = [sys.executable, "-m", "chainlit", "run", str(APP_PATH), "--host", args.host, "--port", str(args.port)]
    if args.headless:
        cmd.append("--headless")
    # A child process, not exec: this one keeps the embedded server's handle until the chat exits.
    # Chainlit reads .chainlit/ and chainlit.md from the working directory: the repository root.
    # The child imports the same `assistant` package as this process, wherever its working directory.
    package_root = str(APP_PATH.parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    child = subprocess.Popen(cmd, cwd=package_root, env=env)
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())  # a stopped `serve` stops the chat too
    try:
        return child.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the child as well: let it finish shutting down
        try:
            return child.wait(timeout=10)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            child.kill()
            return 130


if __name__ == "__main__":
    sys.exit(main())
