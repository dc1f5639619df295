"""Searches through a PostgreSQL outage: how fast a question fails, how fast the first one after it works.

A PostgreSQL of its own (tests/fakes/postgres.py: the pgserver binaries on a fixed 127.0.0.1
port) holds the sample corpus. One Retriever (one connection pool, as in the chat server) asks
a question every `--interval` seconds; the server is stopped (fast shutdown) for `--outages`
seconds each, then started again, and the same Retriever keeps asking until a search succeeds.

Reported per outage: questions asked while the server was down and how long each took to fail
(median / p95 / max), then the failed questions after the restart and the time from the restart
to the first answered search. The figure that matters for users is the last one: with
psycopg_pool's own reconnect backoff (up to 300 s) the pool could stay "unreachable" long after
the server was back; the store caps the backoff window (POOL_RECONNECT_WINDOW).

Usage: python -m bench.db_outage [--outages 10,60,150] [--interval 2] [--no-write]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import TYPE_CHECKING

from bench._common import append_report, machine_summary, md_table, median, now_utc, percentile

if TYPE_CHECKING:
    from assistant.retrieval.search import Retriever
    from tests.fakes.postgres import StoppablePostgres

QUESTION = "How do I deploy on Render?"
HEADERS = ["outage s", "questions while down", "time to fail ms (median / p95 / max)", "failed after restart",
           "restart to first answer s"]


def one_outage(retriever: Retriever, pg: StoppablePostgres, seconds: float, interval: float) -> list[object]:
    """Stop the server for `seconds`, asking every `interval`; then ask until an answer comes."""
    from assistant.retrieval.errors import DatabaseError

    failures: list[float] = []
    pg.stop()
    stopped = time.monotonic()
    while time.monotonic() - stopped < seconds:
        t0 = time.monotonic()
        try:
            retriever.search(QUESTION)
            raise RuntimeError("a search succeeded while the server was stopped")
        except DatabaseError:
            failures.append(time.monotonic() - t0)
        time.sleep(max(0.0, interval - (time.monotonic() - t0)))
    pg.start()
    started = time.monotonic()
    failed_after = 0
    while True:
        try:
            retriever.search(QUESTION)
            break
        except DatabaseError:
            failed_after += 1
    recovered = time.monotonic() - started
    return [f"{seconds:.0f}", len(failures), f"{median(failures) * 1000:.0f} / {percentile(failures, 95) * 1000:.0f}"
            f" / {max(failures) * 1000:.0f}", failed_after, f"{recovered:.2f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outages", default="10,60,150", help="outage lengths in seconds, comma-separated")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between questions")
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to docs/BENCHMARKS.md")
    args = parser.parse_args()
    outages = [float(x) for x in args.outages.split(",") if x.strip()]
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)  # one warning per reconnect attempt otherwise

    from assistant.retrieval import open_retriever
    from tests.conftest import make_settings
    from tests.fakes.postgres import StoppablePostgres

    started_at = now_utc()
    rows = []
    with StoppablePostgres() as pg:
        url = pg.create_database()
        machine = machine_summary(url)
        settings = make_settings(database_url=url, data_dir=pg.base / "data", sample_docs=True)
        retriever = open_retriever(settings, announce=False)
        try:
            retriever.search(QUESTION)
            for seconds in outages:
                rows.append(one_outage(retriever, pg, seconds, args.interval))
                print(md_table(HEADERS, rows[-1:]), flush=True)
        finally:
            retriever.store.close()
    body = (md_table(HEADERS, rows)
            + f"\n\nOne Retriever (DB_CONNECT_TIMEOUT={settings.db_connect_timeout} s,"
              f" DB_POOL_MAX={settings.db_pool_max}) asking every {args.interval:g} s; PostgreSQL stopped with a"
              " fast shutdown and started again on the same address.\n")
    print(body)
    if not args.no_write:
        path = append_report("Searches through a database outage", body, started=started_at, machine=machine)
        print(f"appended to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
