"""`ingest`: index files, folders and websites, asking first when the estimate is long."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from assistant.config import Settings

if TYPE_CHECKING:
    from assistant.retrieval.ingest import IngestPlan


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


