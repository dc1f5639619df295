"""The store's schema: DDL of the retrieval tables, pgvector, and the model recorded in the database.

The embedding model and dimension are recorded in `assistant_meta` by the first open and checked by
every later one, so vectors of two models never mix; the text search configuration is recorded too,
and changing it rebuilds the full-text column. `prepare` runs all of it on one connection.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from assistant.retrieval import fulltext
from assistant.retrieval.database import DatabaseLocation, connect, first_line
from assistant.retrieval.errors import DatabaseError, ModelMismatchError
from assistant.retrieval.migrations import MIGRATION_LOCK_KEY, migrate

if TYPE_CHECKING:
    from assistant.config import Settings

log = logging.getLogger(__name__)

HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64


def schema_steps(dim: int, ts_config: str) -> list[Any]:
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
        # 3: dotted names (`threading.Lock`) indexed as their words (fulltext.WORD_GLUE), statistics recounted
        retext_sql(ts_config),
    ]


def retext_sql(ts_config: str) -> sql.Composable:
    """Regenerate the tsvector column for another text search configuration."""
    return sql.SQL("""
        DROP INDEX IF EXISTS chunks_tsv;
        ALTER TABLE chunks DROP COLUMN tsv;
        ALTER TABLE chunks ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
            setweight({context}, 'A') || setweight({text}, 'B')) STORED;
        CREATE INDEX chunks_tsv ON chunks USING gin (tsv);
    """).format(context=fulltext.tsvector_sql(sql.SQL("context"), ts_config),
                text=fulltext.tsvector_sql(sql.SQL("text"), ts_config)) + fulltext.recount_sql()


def enable_pgvector(conn: psycopg.Connection, location: DatabaseLocation) -> None:
    """CREATE EXTENSION vector, or a DatabaseError saying who can (the server lacks it, or we lack the right)."""
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


def prepare(location: DatabaseLocation, settings: Settings) -> None:
    """Create the extension and tables, record or check the embedding model."""
    with connect(location, timeout=settings.db_connect_timeout, autocommit=True) as conn:
        enable_pgvector(conn, location)
        cfg = settings.text_search_config
        if conn.execute("SELECT 1 FROM pg_ts_config WHERE cfgname = %s", (cfg,)).fetchone() is None:
            raise DatabaseError(f"TEXT_SEARCH_CONFIG={cfg!r} is not a text search configuration on this server")
        migrate(conn, "retrieval", schema_steps(settings.embedding_dim, settings.text_search_config))
        check_meta(conn, settings.embedding_model, settings.embedding_dim, cfg)


def check_meta(conn: psycopg.Connection, model: str, dim: int, cfg: str) -> None:
    """Record the embedding model, dimension and text search configuration of a new database, or
    check them against an existing one (another model is a ModelMismatchError; another text search
    configuration rebuilds the full-text column and index)."""
    with conn.transaction():
        conn.execute("LOCK TABLE assistant_meta IN EXCLUSIVE MODE")
        meta = dict(conn.execute("SELECT key, value FROM assistant_meta").fetchall())
        stored_model, stored_dim = meta.get("embedding_model"), meta.get("embedding_dim")
        column_dim = conn.execute(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
        ).fetchone()[0]
        if stored_model is None:
            if column_dim != dim:
                raise ModelMismatchError(
                    f"The chunks table holds {column_dim}-dimensional vectors but EMBEDDING_DIM is {dim};"
                    " use another database or fix EMBEDDING_DIM"
                )
            conn.execute(
                "INSERT INTO assistant_meta (key, value) VALUES ('embedding_model', %s), ('embedding_dim', %s)",
                (model, str(dim)),
            )
        elif stored_model != model or int(stored_dim or 0) != dim:
            raise ModelMismatchError(
                f"This database was indexed with {stored_model} ({stored_dim} dims), not {model}"
                f" ({dim} dims): set EMBEDDING_MODEL={stored_model}, or use a new database"
                " (DATABASE_URL / ASSISTANT_DATA_DIR) and re-ingest"
            )
        stored_cfg = meta.get("text_search_config")
        if stored_cfg is not None and stored_cfg != cfg:
            log.warning("text search configuration changed %s -> %s: rebuilding the full-text index",
                        stored_cfg, cfg)
            conn.execute(retext_sql(cfg))
        conn.execute(
            "INSERT INTO assistant_meta (key, value) VALUES ('text_search_config', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (cfg,),
        )
