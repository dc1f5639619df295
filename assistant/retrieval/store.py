"""PostgreSQL + pgvector storage: schema, document writes, vector and full-text search.

One `Store` per process holds a connection pool. Every document write is one transaction (a
crash never leaves half a document); the embedding model and dimension are recorded in
`assistant_meta` and checked on open, so vectors of two models never mix.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from assistant.retrieval import fulltext
from assistant.retrieval.database import (
    DatabaseLocation,
    check_answering,
    connect,
    first_line,
    locate,
    lost_message,
    set_statement_timeout,
    watched_connection,
)
from assistant.retrieval.errors import DatabaseError, ModelMismatchError
from assistant.retrieval.filters import Filters, compile_filters
from assistant.retrieval.migrations import MIGRATION_LOCK_KEY, migrate
from assistant.retrieval.relevance import META_KEY as RELEVANCE_META_KEY
from assistant.retrieval.relevance import Calibration, summary
from assistant.retrieval.types import Chunk, Hit, LoadedDocument, embedding_text

if TYPE_CHECKING:
    from assistant.config import Settings

log = logging.getLogger(__name__)

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
# Above 250k chunks ef_search grows with the table (1 per this many rows, twice that when filtered):
# at 1M chunks recall@10 is 0.88 at ef_search 100 and 0.96 at 400 (bench/scale.py, docs/BENCHMARKS.md).
HNSW_ROWS_PER_EF = 2500
# Connection loss: a request waits this long for a pooled connection before asking the server
# itself whether it is up (so a user hears "unreachable" in a second, not after DB_CONNECT_TIMEOUT)...
POOL_QUICK_WAIT = 0.5
# The pool retries a lost server with a doubling delay (1 s, 2 s, 4 s...); after this many seconds
# it gives up, and the next request starts a fresh series. So while questions come in, it tries
# about once a second, and none waits for an attempt minutes away: with psycopg_pool's default
# (300 s), searches kept failing for 88 s after a 150 s outage had ended.
POOL_RECONNECT_WINDOW = 2.0
# A search takes milliseconds; one stuck inside the server (waiting for a lock held by a migration
# or a VACUUM FULL, say) is cancelled by the server after this many seconds, so the user hears of it
# and the connection goes back to the pool.
SEARCH_TIMEOUT = 15.0


def _schema_steps(dim: int, ts_config: str) -> list[Any]:
    """Version-ordered DDL for the retrieval tables. Append only: never edit a shipped step."""
    cfg = sql.Literal(ts_config)
    return [
        sql.SQL("""
        CREATE TABLE IF NOT EXISTS assistant_meta (key text PRIMARY KEY, value text NOT NULL);
        CREATE TABLE IF NOT EXISTS documents (
            id bigserial PRIMARY KEY,
            source text NOT NULL UNIQUE,
            title text NOT NULL,
            url text,
            content_hash text NOT NULL,
            metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            chunk_count int NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX IF NOT EXISTS documents_source_prefix ON documents (source text_pattern_ops);
        CREATE INDEX IF NOT EXISTS documents_metadata ON documents USING gin (metadata jsonb_path_ops);
        CREATE TABLE IF NOT EXISTS chunks (
            id bigserial PRIMARY KEY,
            document_id bigint NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            ordinal int NOT NULL,
            heading_path text[] NOT NULL DEFAULT '{{}}',
            page int,
            context text NOT NULL DEFAULT '',
            text text NOT NULL,
            token_count int NOT NULL,
            embedding vector({dim}) NOT NULL,
            tsv tsvector GENERATED ALWAYS AS (
                setweight(to_tsvector({cfg}::regconfig, context), 'A') ||
                setweight(to_tsvector({cfg}::regconfig, text), 'B')) STORED,
            UNIQUE (document_id, ordinal)
        );
        CREATE INDEX IF NOT EXISTS chunks_embedding_hnsw ON chunks
            USING hnsw (embedding vector_cosine_ops) WITH (m = {m}, ef_construction = {efc});
        CREATE INDEX IF NOT EXISTS chunks_tsv ON chunks USING gin (tsv);
        """).format(dim=sql.Literal(dim), cfg=cfg, m=sql.Literal(HNSW_M), efc=sql.Literal(HNSW_EF_CONSTRUCTION)),
        # 2: Okapi BM25 statistics kept by triggers, backfilled from the chunks already stored
        fulltext.schema_sql(),
    ]


def _retext_sql(ts_config: str) -> sql.Composable:
    """Regenerate the tsvector column for another text search configuration."""
    cfg = sql.Literal(ts_config)
    return sql.SQL("""
        DROP INDEX IF EXISTS chunks_tsv;
        ALTER TABLE chunks DROP COLUMN tsv;
        ALTER TABLE chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
            setweight(to_tsvector({cfg}::regconfig, context), 'A') ||
            setweight(to_tsvector({cfg}::regconfig, text), 'B')) STORED;
        CREATE INDEX chunks_tsv ON chunks USING gin (tsv);
    """).format(cfg=cfg) + fulltext.recount_sql()


_HIT_COLUMNS = sql.SQL(
    "c.id AS chunk_id, c.document_id, c.ordinal, c.heading_path, c.page, c.text,"
    " d.title, d.source, d.url, d.metadata"
)


def _enable_pgvector(conn: psycopg.Connection, location: DatabaseLocation) -> None:
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))  # two first starts race
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except psycopg.Error as err:
        reason = first_line(err)
        if "not available" in reason or "could not open extension control file" in reason:
            hint = "install pgvector on the server (e.g. apt install postgresql-NN-pgvector)"
        else:
            hint = "ask the database owner to run: CREATE EXTENSION vector;"
        raise DatabaseError(f"pgvector is not enabled on {location.description} ({reason}); {hint}") from None


class Store:
    """The documents and chunks tables behind a connection pool."""

    def __init__(self, location: DatabaseLocation, settings: Settings) -> None:
        self.location = location
        self.settings = settings
        self.model = settings.embedding_model
        self.dim = settings.embedding_dim
        self._pool: ConnectionPool | None = None
        self._probe_lock = threading.Lock()
        self._probe_at = 0.0
        self._probe_error: str | None = None

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
        with connect(self.location, timeout=self.settings.db_connect_timeout, autocommit=True) as conn:
            _enable_pgvector(conn, self.location)
            cfg = self.settings.text_search_config
            if conn.execute("SELECT 1 FROM pg_ts_config WHERE cfgname = %s", (cfg,)).fetchone() is None:
                raise DatabaseError(f"TEXT_SEARCH_CONFIG={cfg!r} is not a text search configuration on this server")
            migrate(conn, "retrieval", _schema_steps(self.dim, self.settings.text_search_config))
            self._check_meta(conn)

    def _check_meta(self, conn: psycopg.Connection) -> None:
        with conn.transaction():
            conn.execute("LOCK TABLE assistant_meta IN EXCLUSIVE MODE")
            meta = dict(conn.execute("SELECT key, value FROM assistant_meta").fetchall())
            stored_model, stored_dim = meta.get("embedding_model"), meta.get("embedding_dim")
            column_dim = conn.execute(
                "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
            ).fetchone()[0]
            if stored_model is None:
                if column_dim != self.dim:
                    raise ModelMismatchError(
                        f"The chunks table holds {column_dim}-dimensional vectors but EMBEDDING_DIM is {self.dim};"
                        " use another database or fix EMBEDDING_DIM"
                    )
                conn.execute(
                    "INSERT INTO assistant_meta (key, value) VALUES ('embedding_model', %s), ('embedding_dim', %s)",
                    (self.model, str(self.dim)),
                )
            elif stored_model != self.model or int(stored_dim or 0) != self.dim:
                raise ModelMismatchError(
                    f"This database was indexed with {stored_model} ({stored_dim} dims), not {self.model}"
                    f" ({self.dim} dims): set EMBEDDING_MODEL={stored_model}, or use a new database"
                    " (DATABASE_URL / ASSISTANT_DATA_DIR) and re-ingest"
                )
            cfg = self.settings.text_search_config
            stored_cfg = meta.get("text_search_config")
            if stored_cfg is not None and stored_cfg != cfg:
                log.warning("text search configuration changed %s -> %s: rebuilding the full-text index",
                            stored_cfg, cfg)
                conn.execute(_retext_sql(cfg))
            conn.execute(
                "INSERT INTO assistant_meta (key, value) VALUES ('text_search_config', %s)"
                " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                (cfg,),
            )

    def open_pool(self) -> None:
        """Pooled connections that never wait forever: the server cancels a statement after
        DB_STATEMENT_TIMEOUT, and the client gives up on a server that stops answering
        (`database.WatchedConnection`)."""
        s = self.settings

        def configure(conn: psycopg.Connection) -> None:
            register_vector(conn)
            set_statement_timeout(conn, s.db_statement_timeout)

        self._pool = ConnectionPool(
            self.location.url,
            connection_class=watched_connection(self.location, s.db_statement_timeout),
            min_size=1,
            max_size=s.db_pool_max,
            kwargs={"connect_timeout": s.db_connect_timeout},
            configure=configure,
            check=ConnectionPool.check_connection,
            timeout=s.db_connect_timeout,
            reconnect_timeout=POOL_RECONNECT_WINDOW,
            name="assistant",
            open=True,
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; an unreachable server or a lost connection becomes a one-line DatabaseError."""
        pool = self._pool
        if pool is None:
            raise DatabaseError("The store is closed")
        conn = self._getconn(pool)
        try:
            # Commit on success, roll back on error. Not `with conn:`, which in psycopg 3 also
            # closes the connection, so the pool would open a new one for every request.
            try:
                yield conn
            except BaseException:
                _roll_back(conn)
                raise
            conn.commit()
        except psycopg.errors.QueryCanceled as err:
            raise DatabaseError(
                f"PostgreSQL at {self.location.description} did not answer in time ({first_line(err)}); try again"
            ) from None
        except psycopg.OperationalError as err:
            raise DatabaseError(lost_message(self.location, err)) from None
        finally:
            pool.putconn(conn)

    def _getconn(self, pool: ConnectionPool) -> psycopg.Connection:
        timeout = float(self.settings.db_connect_timeout)
        quick = min(POOL_QUICK_WAIT, timeout)
        try:
            return pool.getconn(timeout=quick)
        except PoolTimeout:
            pass
        # Nothing pooled at once: every connection is busy, or the server went away and the pool
        # is reconnecting in the background. Ask the server: if it is down, say so now.
        self._check_reachable()
        pool.check()  # it is up: drop pooled connections that died with the old server process
        try:
            return pool.getconn(timeout=timeout - quick)
        except PoolTimeout:
            raise DatabaseError(
                f"Cannot reach PostgreSQL at {self.location.description} (no connection within"
                f" {self.settings.db_connect_timeout} s); check that the server is up"
            ) from None

    def _check_reachable(self) -> None:
        """Raise DatabaseError (with the driver's reason) unless a new connection to the server opens.

        Requests that wait while a probe runs share its result (one probe, not one per request).
        """
        asked = time.monotonic()
        with self._probe_lock:
            if self._probe_at < asked:
                try:
                    check_answering(self.location)  # a frozen server accepts the connection, then never answers
                    connect(self.location, timeout=self.settings.db_connect_timeout, autocommit=True).close()
                    self._probe_error = None
                except DatabaseError as err:
                    self._probe_error = str(err)
                self._probe_at = time.monotonic()
            if self._probe_error is not None:
                raise DatabaseError(self._probe_error)

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
        """).format(cols=_HIT_COLUMNS, where=where)
        args = {"v": np.asarray(vector, dtype=np.float32), "k": k, **params}
        s = self.settings
        floor, per_rows = s.hnsw_ef_search, HNSW_ROWS_PER_EF
        if filters:  # a filter applies to the index's output: the filtered top k lie deeper in its ranking
            floor, per_rows = max(floor, s.hnsw_filtered_ef_search), HNSW_ROWS_PER_EF // 2
        with self.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            _limit_search_time(cur)
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
            hit = _row_to_hit(row)
            hit.vector_rank, hit.similarity = i, 1.0 - float(row["distance"])
            hits.append(hit)
        return hits

    def text_search(self, text: str, k: int, filters: Filters | None = None,
                    vector: np.ndarray | None = None) -> list[Hit]:
        """Full-text hits ranked by Okapi BM25 (see assistant/retrieval/fulltext.py).

        Each hit also says which share of the question's IDF mass it matched (`text_matched`):
        a question in another language than the documents matches little, whatever the rank.
        With `vector`, each hit also gets its cosine similarity (for relevance decisions).
        """
        where, params = compile_filters(filters or Filters())
        sim = sql.SQL("1 - (c.embedding <=> %(v)s)") if vector is not None else sql.SQL("NULL::float8")
        with self.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            _limit_search_time(cur)  # not autocommit: holds until this transaction ends
            terms = fulltext.query_terms(cur, text, self.settings.text_search_config)
            candidates = terms.candidate_words()
            if not candidates:
                return []
            args: dict[str, Any] = {
                "tsq": fulltext.tsquery_any(candidates), "words": list(terms.words), "idfs": list(terms.idf),
                "avgdl": max(terms.average_length, 1.0), "cap": fulltext.CANDIDATE_CAP, "k": k, **params}
            if vector is not None:
                args["v"] = np.asarray(vector, dtype=np.float32)
            rows = cur.execute(fulltext.ranked_sql(_HIT_COLUMNS, where, sim), args).fetchall()
        total = terms.total_idf or 1.0
        hits = []
        for i, row in enumerate(rows, 1):
            hit = _row_to_hit(row)
            hit.text_rank, hit.text_score = i, float(row["text_score"])
            hit.text_matched = min(1.0, float(row["matched_idf"]) / total)
            if row["similarity"] is not None:
                hit.similarity = float(row["similarity"])
            hits.append(hit)
        return hits

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


def _limit_search_time(cur: psycopg.Cursor) -> None:
    """Have the server cancel this transaction's statements after SEARCH_TIMEOUT (no search hangs)."""
    cur.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(f"{round(SEARCH_TIMEOUT * 1000)}ms")))


def _row_to_hit(row: dict[str, Any]) -> Hit:
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


def _roll_back(conn: psycopg.Connection) -> None:
    """Roll back after an error without hiding it: a connection interrupted mid-command (Ctrl-C
    while a query was being sent) refuses the rollback ("another command is already in
    progress"), so close it instead; the pool replaces closed connections. Letting that error
    escape would turn a Ctrl-C into a "lost the connection" failure."""
    if conn.closed:
        return
    try:
        conn.rollback()
    except psycopg.Error:
        conn.close()
