"""How long a user waits when a dependency stops answering: a frozen PostgreSQL, an embedding outage.

1. Frozen PostgreSQL (SIGSTOP of every server process: sockets stay open, the kernel still accepts
   connections, nothing is answered, so statement_timeout and TCP timeouts never fire). A
   PostgreSQL of its own (tests/fakes/postgres.py) with the sample corpus; one Retriever; the
   server is frozen for `--freeze` seconds, once while a search is already running inside it (held
   on a lock) and once between searches. "before" runs the same code with the client-side
   deadline switched off (plain psycopg connections, no liveness probe), as before it existed.
2. Embedding outage: the Hugging Face stand-in (tests/fakes/embedding_server.py) hangs, or answers
   HTTP 500, on every request; the first EMBEDDING_BREAKER_FAILURES (3) questions still reach it
   before the breaker opens. Default EMBEDDING_TIMEOUT (10 s); "before" is QUERY_EMBEDDING_DEADLINE
   = EMBEDDING_DEADLINE (30 s), what questions waited before they had a deadline of their own,
   "after" the new default (5 s).

Usage: python -m bench.outage_waits [--freeze 20] [--no-write]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench._common import append_report, machine_summary, md_table, median, now_utc

QUESTION = "How do I deploy on Render?"


def _timed(fn: Any) -> tuple[float, str]:
    started = time.monotonic()
    try:
        fn()
        outcome = "answered"
    except Exception as err:  # the product's one-line error is the figure
        outcome = " ".join(str(err).split())[:110]
    return time.monotonic() - started, outcome


def frozen_database(freeze: float, deadline_on: bool) -> list[list[object]]:
    import psycopg

    from assistant.retrieval import open_retriever
    from assistant.retrieval import store_pool as store_module
    from tests.conftest import make_settings
    from tests.fakes.postgres import StoppablePostgres

    saved = store_module.watched_connection, store_module.check_answering
    if not deadline_on:
        store_module.watched_connection = lambda *a, **k: psycopg.Connection  # type: ignore[assignment]
        store_module.check_answering = lambda location: None  # type: ignore[assignment]
    rows: list[list[object]] = []
    try:
        with StoppablePostgres() as pg:
            url = pg.create_database()
            settings = make_settings(database_url=url, data_dir=Path(tempfile.mkdtemp()), sample_docs=True)
            retriever = open_retriever(settings, announce=False)
            assert retriever.search(QUESTION).hits
            label = "after (client-side deadline)" if deadline_on else "before (no client-side deadline)"
            # in flight: the search waits inside the server on a lock when the server freezes
            blocker = psycopg.connect(url)
            blocker.execute("LOCK TABLE chunks IN ACCESS EXCLUSIVE MODE")
            out: dict[str, Any] = {}
            thread = threading.Thread(target=lambda: out.update(r=_timed(lambda: retriever.search(QUESTION))))
            thread.start()
            time.sleep(1.0)
            pg.freeze()
            frozen_at = time.monotonic()
            thaw = threading.Timer(freeze, pg.thaw)
            thaw.start()
            thread.join()
            waited = time.monotonic() - frozen_at
            rows.append([label, "search in flight when the server froze", f"{waited:.2f}", out["r"][1]])
            thaw.join()
            blocker.close()
            assert retriever.search(QUESTION).hits
            # between searches: the next question finds the server frozen
            pg.freeze()
            thaw = threading.Timer(freeze, pg.thaw)
            thaw.start()
            seconds, outcome = _timed(lambda: retriever.search(QUESTION))
            rows.append([label, "next search on a frozen server", f"{seconds:.2f}", outcome])
            thaw.join()
            seconds, outcome = _timed(lambda: retriever.search(QUESTION))
            rows.append([label, "first search after SIGCONT", f"{seconds:.2f}", outcome])
            retriever.store.close()
    finally:
        store_module.watched_connection, store_module.check_answering = saved
    return rows


def embedding_outage(query_deadline: float, fault: tuple[Any, ...], sample_url: str) -> list[float]:
    from assistant.retrieval.embedders import make_embedder
    from assistant.retrieval.search import Retriever
    from assistant.retrieval.store import Store
    from tests.fakes.embedding_server import EmbeddingServer

    with EmbeddingServer() as server:
        settings = dataclasses.replace(
            server.settings("hf", database_url=sample_url, data_dir=Path(tempfile.mkdtemp()), sample_docs=False),
            embedding_timeout=10.0, embedding_deadline=30.0, query_embedding_deadline=query_deadline,
            embedding_breaker_failures=3, query_cache_size=0)
        retriever = Retriever(Store.open(settings, announce=False), make_embedder(settings), settings)
        server.fail(fault)
        waits = []
        for n in range(4):  # 3 reach the provider, the 4th finds the breaker open
            started = time.monotonic()
            result = retriever.search(f"{QUESTION} ({n})")
            assert result.degraded and result.hits
            waits.append(time.monotonic() - started)
        retriever.embedder.close()
        retriever.store.close()
    return waits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--freeze", type=float, default=20.0, help="seconds each freeze lasts")
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    started_at = now_utc()

    db_rows = frozen_database(args.freeze, deadline_on=False) + frozen_database(args.freeze, deadline_on=True)
    db_table = md_table(["code", "moment", "wait s", "what the caller got"], db_rows)
    print(db_table)

    from assistant.retrieval import open_retriever
    from tests.conftest import make_settings
    from tests.fakes.postgres import StoppablePostgres

    emb_rows = []
    with StoppablePostgres() as pg:
        url = pg.create_database()
        open_retriever(make_settings(database_url=url, data_dir=Path(tempfile.mkdtemp()), sample_docs=True),
                       announce=False).store.close()
        for name, fault in (("hang", ("hang",)), ("HTTP 500", ("status", 500))):
            for label, deadline in (("before: QUERY_EMBEDDING_DEADLINE = EMBEDDING_DEADLINE = 30 s", 30.0),
                                    ("after: QUERY_EMBEDDING_DEADLINE = 5 s (default)", 5.0)):
                waits = embedding_outage(deadline, fault, url)
                emb_rows.append([name, label, " / ".join(f"{w:.1f}" for w in waits[:3]),
                                 f"{median(waits[:3]):.1f}", f"{waits[3] * 1000:.0f} ms"])
                print(emb_rows[-1], flush=True)
    emb_table = md_table(["outage", "setting", "questions 1 / 2 / 3 wait s", "median s",
                          "4th question (breaker open)"], emb_rows)
    print(emb_table)
    body = (f"### A frozen PostgreSQL (SIGSTOP for {args.freeze:g} s), sample corpus, one Retriever\n\n{db_table}\n\n"
            "### Embedding outage: the first EMBEDDING_BREAKER_FAILURES = 3 questions (HF stand-in, "
            "EMBEDDING_TIMEOUT 10 s)\n\n" + emb_table + "\n\nEvery question was answered from full-text search "
            "(degraded); the wait is the time to that answer.\n")
    if not args.no_write:
        print(f"appended to {append_report('Waits during a frozen database and an embedding outage', body, started=started_at, machine=machine_summary())}")  # noqa: E501
    return 0


if __name__ == "__main__":
    sys.exit(main())
