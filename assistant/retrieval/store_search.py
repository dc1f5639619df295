"""The store's read path for questions: nearest chunks by vector (HNSW) and by Okapi BM25 text rank.

Both run with a server-side time limit (SEARCH_TIMEOUT), so a search stuck behind a lock is
cancelled and reported instead of hanging; both return `Hit`s (ranks and scores filled in by the
kind of search, fused later by `search.Retriever`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from assistant.retrieval import fulltext
from assistant.retrieval.filters import Filters, compile_filters
from assistant.retrieval.types import Hit

if TYPE_CHECKING:
    from assistant.config import Settings

# Above 250k chunks ef_search grows with the table (1 per this many rows, twice that when filtered):
# at 1M chunks recall@10 is 0.88 at ef_search 100 and 0.96 at 400 (bench/scale.py, docs/BENCHMARKS.md).
HNSW_ROWS_PER_EF = 2500
# A search takes milliseconds; one stuck inside the server (waiting for a lock held by a migration
# or a VACUUM FULL, say) is cancelled by the server after this many seconds, so the user hears of it
# and the connection goes back to the pool.
SEARCH_TIMEOUT = 15.0

HIT_COLUMNS = sql.SQL(
    "c.id AS chunk_id, c.document_id, c.ordinal, c.heading_path, c.page, c.text,"
    " d.title, d.source, d.url, d.metadata"
)


def vector_search(conn: psycopg.Connection, settings: Settings, vector: np.ndarray, k: int,
                  filters: Filters | None = None) -> list[Hit]:
    """Nearest chunks by cosine distance through the HNSW index (iterative scan when filtered)."""
    where, params = compile_filters(filters or Filters())
    query = sql.SQL("""
        WITH nearest AS MATERIALIZED (
            SELECT {cols}, c.embedding <=> %(v)s AS distance
            FROM chunks c JOIN documents d ON d.id = c.document_id
            WHERE {where}
            ORDER BY c.embedding <=> %(v)s
            LIMIT %(k)s)
        SELECT * FROM nearest ORDER BY distance, chunk_id
    """).format(cols=HIT_COLUMNS, where=where)
    args = {"v": np.asarray(vector, dtype=np.float32), "k": k, **params}
    s = settings
    floor, per_rows = s.hnsw_ef_search, HNSW_ROWS_PER_EF
    if filters:  # a filter applies to the index's output: the filtered top k lie deeper in its ranking
        floor, per_rows = max(floor, s.hnsw_filtered_ef_search), HNSW_ROWS_PER_EF // 2
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        limit_search_time(cur)
        cur.execute(  # ef_search = max(k, setting, table rows / per_rows), at most pgvector's 1000
            "SELECT set_config('hnsw.ef_search', least(1000, greatest(%(floor)s,"
            " (SELECT reltuples FROM pg_class WHERE oid = 'chunks'::regclass) / %(per)s))::int::text, true)",
            {"floor": max(k, floor), "per": per_rows},
        )
        if filters:
            cur.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        rows = cur.execute(query, args).fetchall()
    hits = []
    for i, row in enumerate(rows, 1):
        hit = row_to_hit(row)
        hit.vector_rank, hit.similarity = i, 1.0 - float(row["distance"])
        hits.append(hit)
    return hits


def text_search(conn: psycopg.Connection, settings: Settings, text: str, k: int, filters: Filters | None = None,
                vector: np.ndarray | None = None, terms: fulltext.QueryTerms | None = None) -> list[Hit]:
    """Full-text hits ranked by Okapi BM25 (see assistant/retrieval/fulltext.py).

    Each hit also says which share of the question's IDF mass it matched (`text_matched`):
    a question in another language than the documents matches little, whatever the rank.
    With `vector`, each hit also gets its cosine similarity (for relevance decisions). `terms`:
    the question's `fulltext.query_terms` when the caller has them already (not looked up again).
    """
    where, params = compile_filters(filters or Filters())
    sim = sql.SQL("1 - (c.embedding <=> %(v)s)") if vector is not None else sql.SQL("NULL::float8")
    with conn.cursor(row_factory=dict_row) as cur:
        limit_search_time(cur)  # not autocommit: holds until this transaction ends
        if terms is None:
            terms = fulltext.query_terms(cur, text, settings.text_search_config)
        candidates = terms.candidate_words()
        if not candidates:
            return []
        args: dict[str, Any] = {
            "tsq": fulltext.tsquery_any(candidates), "words": list(terms.words), "idfs": list(terms.idf),
            "avgdl": max(terms.average_length, 1.0), "cap": fulltext.CANDIDATE_CAP, "k": k, **params}
        if vector is not None:
            args["v"] = np.asarray(vector, dtype=np.float32)
        rows = cur.execute(fulltext.ranked_sql(HIT_COLUMNS, where, sim), args).fetchall()
    total = terms.total_idf or 1.0
    hits = []
    for i, row in enumerate(rows, 1):
        hit = row_to_hit(row)
        hit.text_rank, hit.text_score = i, float(row["text_score"])
        hit.text_matched = min(1.0, float(row["matched_idf"]) / total)
        if row["similarity"] is not None:
            hit.similarity = float(row["similarity"])
        hits.append(hit)
    return hits


def limit_search_time(cur: psycopg.Cursor) -> None:
    """Have the server cancel this transaction's statements after SEARCH_TIMEOUT (no search hangs)."""
    cur.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(f"{round(SEARCH_TIMEOUT * 1000)}ms")))


def row_to_hit(row: dict[str, Any]) -> Hit:
    return Hit(
        chunk_id=int(row["chunk_id"]),
        document_id=int(row["document_id"]),
        rank=0,
        score=0.0,
        title=row["title"],
        source=row["source"],
        text=row["text"],
        heading_path=list(row["heading_path"] or []),
        page=row["page"],
        ordinal=int(row["ordinal"]),
        url=row["url"],
        metadata=dict(row["metadata"] or {}),
    )
