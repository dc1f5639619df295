"""PostgreSQL + pgvector storage: one `Store` per process, its documents and chunks.

The store is split by job: `store_schema` (DDL, pgvector, the model recorded in the database),
`store_pool` (connections that never wait forever), `store_search` (vector and full-text search
queries); this module holds the `Store` that ties them together, the write path (every document
write is one transaction: a crash never leaves half a document) and the listings and statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from assistant.retrieval import fulltext, store_schema, store_search
from assistant.retrieval.database import DatabaseLocation, locate
from assistant.retrieval.filters import Filters
from assistant.retrieval.relevance import META_KEY as RELEVANCE_META_KEY
from assistant.retrieval.relevance import Calibration, summary
from assistant.retrieval.store_pool import StorePool
from assistant.retrieval.store_schema import HNSW_EF_CONSTRUCTION, HNSW_M
from assistant.retrieval.types import Chunk, Hit, LoadedDocument, embedding_text

if TYPE_CHECKING:
    from assistant.config import Settings


class Store:
    """The documents and chunks tables behind a connection pool."""

    def __init__(self, location: DatabaseLocation, settings: Settings) -> None:
        self.location = location
        self.settings = settings
        self.model = settings.embedding_model
        self.dim = settings.embedding_dim
        self._pool = StorePool(location, settings)

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(cls, settings: Settings, *, announce: bool = True) -> Store:
        """Locate (or start) the database, migrate it, check the model, open the pool."""
        store = cls(locate(settings, announce=announce), settings)
        store.prepare()
        store.open_pool()
        return store

    def prepare(self) -> None:
        """Create the extension and tables, record or check the embedding model."""
        store_schema.prepare(self.location, self.settings)

    def open_pool(self) -> None:
        """Open the connection pool (`store_pool.StorePool`)."""
        self._pool.open()

    def close(self) -> None:
        self._pool.close()

    def connection(self) -> AbstractContextManager[psycopg.Connection]:
        """A pooled connection; an unreachable server or a lost connection becomes a one-line DatabaseError."""
        return self._pool.connection()

    # -- documents -----------------------------------------------------------------------------

    def document_hash(self, source: str) -> str | None:
        with self.connection() as conn:
            row = conn.execute("SELECT content_hash FROM documents WHERE source = %s", (source,)).fetchone()
        return row[0] if row else None

    def replace_document(self, doc: LoadedDocument, chunks: Sequence[Chunk], vectors: np.ndarray) -> int:
        """Insert or replace a document and all its chunks in one transaction; returns its id."""
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        if len(vectors) and vectors.shape[1] != self.dim:
            raise ValueError(f"vectors have {vectors.shape[1]} dims, the store holds {self.dim}")
        with self.connection() as conn, conn.transaction():
            fulltext.lock_writers(conn)
            doc_id = conn.execute(
                """INSERT INTO documents (source, title, url, content_hash, metadata, chunk_count)
                   VALUES (%s, %s, %s, %s, %s, %s)
                   ON CONFLICT (source) DO UPDATE SET title = EXCLUDED.title, url = EXCLUDED.url,
                     content_hash = EXCLUDED.content_hash, metadata = EXCLUDED.metadata,
                     chunk_count = EXCLUDED.chunk_count, updated_at = now()
                   RETURNING id""",
                (doc.source, doc.title, doc.url, doc.content_hash, Jsonb(doc.metadata), len(chunks)),
            ).fetchone()[0]
            conn.execute("DELETE FROM chunks WHERE document_id = %s", (doc_id,))
            with conn.cursor().copy(
                "COPY chunks (document_id, ordinal, heading_path, page, context, text, token_count, embedding)"
                " FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "int4", "text[]", "int4", "text", "text", "int4", "vector"])
                for chunk, vec in zip(chunks, vectors, strict=True):
                    context = embedding_text(doc.title, Chunk(0, "", chunk.heading_path)).strip()
                    copy.write_row((doc_id, chunk.ordinal, list(chunk.heading_path), chunk.page, context,
                                    chunk.text, chunk.token_count, np.asarray(vec, dtype=np.float32)))
        return int(doc_id)

    def delete_documents(self, sources: Sequence[str]) -> int:
        if not sources:
            return 0
        with self.connection() as conn, conn.transaction():
            fulltext.lock_writers(conn)
            cur = conn.execute("DELETE FROM documents WHERE source = ANY(%s)", (list(sources),))
            return cur.rowcount

    def documents(self, *, ids: Sequence[int] = (), sources: Sequence[str] = (), contains: str = "",
                  limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        """Indexed documents (newest change first) for listing and serving: id, title, source, url,
        type, filename, chunk_count, content_hash, updated_at, metadata. Optionally only these ids or
        sources, or those whose title, file name or source contains `contains` (case-insensitive)."""
        where, args = [], {"limit": limit, "offset": offset}
        if ids:
            where.append("d.id = ANY(%(ids)s)")
            args["ids"] = [int(i) for i in ids]
        if sources:
            where.append("d.source = ANY(%(sources)s)")
            args["sources"] = list(sources)
        if contains:
            where.append("(d.title ILIKE %(like)s ESCAPE '\\' OR d.source ILIKE %(like)s ESCAPE '\\')")
            args["like"] = "%" + contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = sql.SQL("""
            SELECT d.id, d.title, d.source, d.url, d.metadata, d.chunk_count, d.updated_at, d.content_hash,
                   coalesce(d.metadata->>'type', '') AS type, coalesce(d.metadata->>'filename', '') AS filename
            FROM documents d WHERE {where}
            ORDER BY d.updated_at DESC, d.id DESC LIMIT %(limit)s OFFSET %(offset)s
        """).format(where=sql.SQL(" AND ".join(where) or "TRUE"))
        with self.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(query, args).fetchall()

    def document_stats(self) -> dict[str, Any]:
        """Totals for the document list: documents, chunks, and both per file type."""
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT coalesce(metadata->>'type', '?'), count(*), coalesce(sum(chunk_count), 0)"
                " FROM documents GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
        by_type = {str(t): {"documents": int(d), "chunks": int(c)} for t, d, c in rows}
        return {"documents": sum(v["documents"] for v in by_type.values()),
                "chunks": sum(v["chunks"] for v in by_type.values()), "by_type": by_type}

    def source_counts(self, prefix: str) -> dict[str, int]:
        """Documents from the web (URL sources), from files under `prefix`, and from other files."""
        like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self.connection() as conn:
            web, under, total = conn.execute(
                "SELECT count(*) FILTER (WHERE source LIKE '%%://%%'),"
                " count(*) FILTER (WHERE source LIKE %s ESCAPE '\\'), count(*) FROM documents", (like,)).fetchone()
        return {"web": int(web), "under_prefix": int(under), "other_files": int(total - web - under)}

    def document_chunks(self, document_id: int) -> list[dict[str, Any]]:
        """A document's chunks in order (ordinal, page, heading_path, text): its indexed text."""
        with self.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "SELECT ordinal, page, heading_path, text FROM chunks WHERE document_id = %s ORDER BY ordinal",
                (int(document_id),)).fetchall()

    def delete_document(self, document_id: int) -> dict[str, Any] | None:
        """Remove one document by id through `delete_documents` (the one delete path); returns the
        removed row, or None when there was no such document (e.g. removed twice)."""
        rows = self.documents(ids=[document_id], limit=1)
        if not rows or not self.delete_documents([rows[0]["source"]]):
            return None
        return rows[0]

    def sources(self) -> list[str]:
        with self.connection() as conn:
            return [r[0] for r in conn.execute("SELECT source FROM documents ORDER BY source").fetchall()]

    def document_count(self) -> int:
        with self.connection() as conn:
            return int(conn.execute("SELECT count(*) FROM documents").fetchone()[0])

    def titles(self, limit: int = 50) -> list[dict[str, Any]]:
        """Documents with their first headings (for starter questions and the UI)."""
        with self.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                """SELECT d.id, d.title, d.source, d.url, d.metadata, d.chunk_count,
                          (SELECT array_agg(DISTINCT h) FROM chunks c, unnest(c.heading_path[2:2]) h
                            WHERE c.document_id = d.id) AS sections
                   FROM documents d ORDER BY d.title LIMIT %s""",
                (limit,),
            ).fetchall()

    def status(self) -> dict[str, Any]:
        with self.connection() as conn:
            docs, chunks, tokens = conn.execute(
                "SELECT (SELECT count(*) FROM documents), count(*), coalesce(sum(token_count), 0) FROM chunks"
            ).fetchone()
            meta = dict(conn.execute("SELECT key, value FROM assistant_meta").fetchall())
            indexes = conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chunks' ORDER BY indexname"
            ).fetchall()
            size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
            bm25 = fulltext.statistics(conn)
            versions = conn.execute(
                "SELECT current_setting('server_version'),"
                " (SELECT extversion FROM pg_extension WHERE extname = 'vector')"
            ).fetchone()
        return {
            "database": self.location.description,
            "embedded": self.location.embedded,
            "server_version": versions[0],
            "pgvector_version": versions[1],
            "database_size": size,
            "documents": int(docs),
            "chunks": int(chunks),
            "tokens": int(tokens),
            "embedding_model": meta.get("embedding_model"),
            "embedding_dim": int(meta.get("embedding_dim") or 0),
            "text_search_config": meta.get("text_search_config"),
            "fulltext": bm25,
            "relevance": relevance_status(meta.get(RELEVANCE_META_KEY), bm25["version"]),
            "hnsw": {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": self.settings.hnsw_ef_search,
                     "filtered_ef_search": self.settings.hnsw_filtered_ef_search},
            "indexes": {name: definition for name, definition in indexes},
        }

    def ping(self) -> None:
        """Raise DatabaseError unless a pooled connection answers a query."""
        with self.connection() as conn:
            conn.execute("SELECT 1")

    # -- search --------------------------------------------------------------------------------

    def vector_search(self, vector: np.ndarray, k: int, filters: Filters | None = None) -> list[Hit]:
        """Nearest chunks by cosine distance through the HNSW index (`store_search.vector_search`)."""
        with self.connection() as conn:
            return store_search.vector_search(conn, self.settings, vector, k, filters)

    def text_search(self, text: str, k: int, filters: Filters | None = None,
                    vector: np.ndarray | None = None, terms: fulltext.QueryTerms | None = None) -> list[Hit]:
        """Full-text hits ranked by Okapi BM25, with cosine similarities given `vector`
        (`store_search.text_search`)."""
        with self.connection() as conn:
            return store_search.text_search(conn, self.settings, text, k, filters, vector, terms)

    def query_terms(self, text: str) -> fulltext.QueryTerms:
        """The question's lexemes with their corpus statistics (`fulltext.query_terms`)."""
        with self.connection() as conn, conn.cursor() as cur:
            return fulltext.query_terms(cur, text, self.settings.text_search_config)

    def get_meta(self, key: str) -> str | None:
        with self.connection() as conn:
            row = conn.execute("SELECT value FROM assistant_meta WHERE key = %s", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.connection() as conn:
            conn.execute("INSERT INTO assistant_meta (key, value) VALUES (%s, %s)"
                         " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (key, value))

    def corpus_version(self) -> int:
        """A number that changes with every write of chunks (keys caches derived from the corpus)."""
        with self.connection() as conn:
            return fulltext.version(conn)


def relevance_status(raw: str | None, version: int) -> dict[str, Any] | None:
    """The stored relevance calibration (assistant/retrieval/relevance.py), and whether it is current."""
    found = Calibration.from_json(raw) if raw else None
    shown = summary(found)
    if shown is not None and found is not None:
        shown["current"] = found.version == version
    return shown
