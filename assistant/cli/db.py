"""`db status`: what the database holds and how it is configured."""

from __future__ import annotations

import argparse
import json

from assistant.config import Settings


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


