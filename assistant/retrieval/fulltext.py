"""Okapi BM25 over the chunks' `tsv` column, in plain PostgreSQL (no extension beyond pgvector).

BM25 needs, besides each chunk's term frequencies (the positions its tsvector keeps), how many
chunks hold each word (document frequency), the number of chunks N and their average length.
These live in two small tables kept by statement-level triggers on `chunks`, so they change in
the very transaction that writes the chunks: an add, a replace, a delete (also by cascade from
`documents`), `ingest --prune`, a TRUNCATE. A killed ingest rolls them back with its chunks, so
the statistics are exact at any moment, never estimates (the distinctive-words ranking this
replaces read PostgreSQL's sampled `pg_stats`, wrong by design on small tables and stale between
ANALYZE runs).

    fulltext_terms (lexeme, df)                      one row per distinct lexeme
    fulltext_stats (chunks, total_length, version)   one row; version counts writes

A chunk's length is its `token_count` (the chunker's count of the text), so "average length" is
exact too. Ranking: the query's lexemes, rarest first, choose the candidate chunks through the
GIN index until their postings reach CANDIDATE_BUDGET (always at least one word); every query
word then scores those candidates with BM25 (k1 0.9, b 0.4, Lucene's always-positive IDF). A
chunk that holds only very common words cannot outrank one with a rare word, so the words left
out of candidate generation still count, but a question full of "the" and "how" does not read
half the table (this keeps a search at 100k chunks in tens of milliseconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

K1 = 0.9  # term-frequency saturation (BEIR / Anserini defaults; the same as the naive baseline's)
B = 0.4  # length normalisation
CANDIDATE_BUDGET = 2000  # postings the candidate-generating words may cover (rarest words first)
CANDIDATE_CAP = 4000  # chunks scored at most (a question made only of very common words)
FULLTEXT_LOCK_KEY = 0x6_D0C_B325  # serialises writers of the statistics (no deadlocks, exact counts)

# Triggers with transition tables: one statement's rows at once (a COPY of a document's chunks).
_SCHEMA = """
CREATE TABLE IF NOT EXISTS fulltext_terms (lexeme text PRIMARY KEY, df integer NOT NULL);
CREATE TABLE IF NOT EXISTS fulltext_stats (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    chunks bigint NOT NULL DEFAULT 0,
    total_length bigint NOT NULL DEFAULT 0,
    version bigint NOT NULL DEFAULT 0);

CREATE OR REPLACE FUNCTION fulltext_count_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM added_rows) THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock({lock});
    INSERT INTO fulltext_terms AS t (lexeme, df)
        SELECT w, count(*) FROM added_rows, unnest(tsvector_to_array(tsv)) w GROUP BY w ORDER BY w
        ON CONFLICT (lexeme) DO UPDATE SET df = t.df + EXCLUDED.df;
    UPDATE fulltext_stats SET chunks = chunks + a.n, total_length = total_length + a.len, version = version + 1
        FROM (SELECT count(*) AS n, coalesce(sum(greatest(token_count, 1)), 0) AS len FROM added_rows) a;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION fulltext_count_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM removed_rows) THEN
        RETURN NULL;  -- a first ingest of a document deletes nothing
    END IF;
    PERFORM pg_advisory_xact_lock({lock});
    UPDATE fulltext_terms t SET df = t.df - r.n
        FROM (SELECT w, count(*) AS n FROM removed_rows, unnest(tsvector_to_array(tsv)) w GROUP BY w) r
        WHERE t.lexeme = r.w;
    DELETE FROM fulltext_terms t USING (SELECT DISTINCT w FROM removed_rows, unnest(tsvector_to_array(tsv)) w) r
        WHERE t.lexeme = r.w AND t.df <= 0;
    UPDATE fulltext_stats SET chunks = chunks - r.n, total_length = total_length - r.len, version = version + 1
        FROM (SELECT count(*) AS n, coalesce(sum(greatest(token_count, 1)), 0) AS len FROM removed_rows) r;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION fulltext_count_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock({lock});
    INSERT INTO fulltext_terms AS t (lexeme, df)
        SELECT w, sum(n) FROM (
            SELECT w, 1 AS n FROM new_rows, unnest(tsvector_to_array(tsv)) w
            UNION ALL SELECT w, -1 FROM old_rows, unnest(tsvector_to_array(tsv)) w) d
        GROUP BY w HAVING sum(n) <> 0 ORDER BY w
        ON CONFLICT (lexeme) DO UPDATE SET df = t.df + EXCLUDED.df;
    DELETE FROM fulltext_terms WHERE df <= 0;
    UPDATE fulltext_stats SET total_length = total_length
            + (SELECT coalesce(sum(greatest(token_count, 1)), 0) FROM new_rows)
            - (SELECT coalesce(sum(greatest(token_count, 1)), 0) FROM old_rows),
        version = version + 1;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION fulltext_count_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock({lock});
    DELETE FROM fulltext_terms;
    UPDATE fulltext_stats SET chunks = 0, total_length = 0, version = version + 1;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS fulltext_added ON chunks;
DROP TRIGGER IF EXISTS fulltext_removed ON chunks;
DROP TRIGGER IF EXISTS fulltext_changed ON chunks;
DROP TRIGGER IF EXISTS fulltext_truncated ON chunks;
CREATE TRIGGER fulltext_added AFTER INSERT ON chunks REFERENCING NEW TABLE AS added_rows
    FOR EACH STATEMENT EXECUTE FUNCTION fulltext_count_added();
CREATE TRIGGER fulltext_removed AFTER DELETE ON chunks REFERENCING OLD TABLE AS removed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION fulltext_count_removed();
CREATE TRIGGER fulltext_changed AFTER UPDATE ON chunks REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION fulltext_count_changed();
CREATE TRIGGER fulltext_truncated AFTER TRUNCATE ON chunks
    FOR EACH STATEMENT EXECUTE FUNCTION fulltext_count_truncated();
"""

_RECOUNT = """
SELECT pg_advisory_xact_lock({lock});
DELETE FROM fulltext_terms;
INSERT INTO fulltext_terms (lexeme, df)
    SELECT w, count(*) FROM chunks, unnest(tsvector_to_array(tsv)) w GROUP BY w;
INSERT INTO fulltext_stats (singleton) VALUES (true) ON CONFLICT DO NOTHING;
UPDATE fulltext_stats SET chunks = c.n, total_length = c.len, version = version + 1
    FROM (SELECT count(*) AS n, coalesce(sum(greatest(token_count, 1)), 0) AS len FROM chunks) c;
"""


# Dots and slashes next to a letter, which the PostgreSQL parser reads as gluing words into one
# "host" or "file" token: `threading.Lock`, `os.path.join` and `/usr/bin/python` would each be a
# single lexeme, so a question naming `threading.Lock` could not match a section that says `Lock`,
# nor `RLock` match `threading.RLock` (a quarter of docs-python's distinct lexemes were such
# compounds). Both the chunks' and the question's text are split there before parsing, so a dotted
# name counts as its words. A dot between digits is kept: `0.05` and `3.11` stay one number.
WORD_GLUE = "(?<=[[:alpha:]_])[./]|[./](?=[[:alpha:]_])"


def tsvector_sql(text: sql.Composable, ts_config: str) -> sql.Composable:
    """The tsvector of `text` (a column or a parameter) as chunks and questions are both parsed."""
    return sql.SQL("to_tsvector({cfg}::regconfig, regexp_replace({text}, {glue}, ' ', 'g'))").format(
        cfg=sql.Literal(ts_config), text=text, glue=sql.Literal(WORD_GLUE))


def schema_sql() -> sql.Composable:
    """Tables, trigger functions and triggers, then a full count (the migration's backfill)."""
    lock = sql.Literal(FULLTEXT_LOCK_KEY)
    return sql.SQL(_SCHEMA).format(lock=lock) + sql.SQL(_RECOUNT).format(lock=lock)


def recount_sql() -> sql.Composable:
    """Recount every statistic from the chunks (after the tsvector column was regenerated)."""
    return sql.SQL(_RECOUNT).format(lock=sql.Literal(FULLTEXT_LOCK_KEY))


def lock_writers(conn: psycopg.Connection) -> None:
    """Take the statistics' lock first in a write transaction, so lock order is the same for all writers."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (FULLTEXT_LOCK_KEY,))


def statistics(conn: psycopg.Connection) -> dict[str, Any]:
    """N, average length, distinct lexemes and the write counter, as `db status` shows them."""
    row = conn.execute(
        "SELECT s.chunks, s.total_length, s.version, (SELECT count(*) FROM fulltext_terms) FROM fulltext_stats s"
    ).fetchone()
    if row is None:
        return {"chunks": 0, "average_length": 0.0, "terms": 0, "version": 0, "k1": K1, "b": B}
    chunks, total, version, terms = (int(v) for v in row)
    return {"chunks": chunks, "average_length": round(total / chunks, 2) if chunks else 0.0,
            "terms": terms, "version": version, "k1": K1, "b": B}


def version(conn: psycopg.Connection) -> int:
    """Changes with every write of chunks (for caches derived from the corpus)."""
    row = conn.execute("SELECT version FROM fulltext_stats").fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class QueryTerms:
    """The question's lexemes with their document frequency and IDF on this corpus."""

    words: tuple[str, ...]
    df: tuple[int, ...]
    idf: tuple[float, ...]
    chunks: int
    average_length: float

    @property
    def known(self) -> list[int]:
        """Indexes of the words some chunk holds."""
        return [i for i, d in enumerate(self.df) if d > 0]

    @property
    def total_idf(self) -> float:
        return sum(self.idf)

    @property
    def unknown_share(self) -> float:
        """Share of the question's IDF mass in words no chunk holds (0 for a question of no words)."""
        total = self.total_idf
        return sum(w for w, d in zip(self.idf, self.df, strict=True) if d == 0) / total if total else 0.0

    @property
    def known_share(self) -> float:
        """Share of the question's distinct words some chunk holds: near 0 for a question in a
        language or script the documents do not use."""
        return len(self.known) / len(self.words) if self.words else 0.0

    def candidate_words(self, budget: int = CANDIDATE_BUDGET) -> list[str]:
        """Rarest known words first while their postings fit `budget` (always at least one)."""
        chosen, total = [], 0
        for i in sorted(self.known, key=lambda i: (self.df[i], self.words[i])):
            if chosen and total + self.df[i] > budget:
                break
            chosen.append(self.words[i])
            total += self.df[i]
        return chosen


def idf(n: int, df: int) -> float:
    """Lucene's BM25 IDF, ln(1 + (N - df + 0.5) / (df + 0.5)): never negative. A word no chunk
    holds gets the highest value (it is the most surprising), which matters for coverage."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def query_terms(cur: psycopg.Cursor, text: str, ts_config: str) -> QueryTerms:
    """The distinct lexemes of `text` (as the chunks' configuration makes them) with their statistics."""
    rows = cur.execute(sql.SQL("""
        SELECT q.w, coalesce(t.df, 0) AS df, s.chunks, s.total_length
        FROM (SELECT DISTINCT w FROM unnest(tsvector_to_array({tsv})) w) q(w)
        LEFT JOIN fulltext_terms t ON t.lexeme = q.w
        CROSS JOIN fulltext_stats s
        ORDER BY q.w
    """).format(tsv=tsvector_sql(sql.SQL("%(t)s"), ts_config)), {"t": text}).fetchall()
    if not rows:
        return QueryTerms((), (), (), 0, 0.0)
    n, total = int(_col(rows[0], 2)), int(_col(rows[0], 3))
    words = tuple(str(_col(r, 0)) for r in rows)
    dfs = tuple(int(_col(r, 1)) for r in rows)
    return QueryTerms(words, dfs, tuple(idf(n, d) for d in dfs), n, total / n if n else 0.0)


def _col(row: Any, i: int) -> Any:
    return row[i] if isinstance(row, tuple) else list(row.values())[i]


def tsquery_any(words: list[str]) -> str:
    """`'a' | 'b'` in tsquery syntax: the lexemes as they are (quoted, no parsing or stemming again)."""
    return " | ".join("'" + w.replace("\\", "\\\\").replace("'", "''") + "'" for w in words)


def ranked_sql(columns: sql.Composable, where: sql.Composable, similarity: sql.Composable) -> sql.Composable:
    """BM25 over the candidates of `%(tsq)s` (GIN index), best first; also the IDF each chunk matched.

    Parameters: tsq, words, idfs, avgdl, cap, k (and the filters' own). A chunk's term frequencies
    are the positions of the query's lexemes only: `setweight(tsv, 'D', words)` marks them (the chunk
    weighs its own words A and B, never D) and `ts_filter` keeps them, in C, so a candidate is not
    unnested whole (five times faster on SciFact's 250-word abstracts).
    """
    return sql.SQL("""
        WITH candidates AS MATERIALIZED (
            SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id
            WHERE c.tsv @@ %(tsq)s::tsquery AND {where}
            LIMIT %(cap)s),
        scored AS (
            SELECT c.id,
                   sum(q.idf * u.tf * {k1plus} / (u.tf + {k1} * ({one_b} + {b} * greatest(c.token_count, 1)
                       / %(avgdl)s::float8))) AS score,
                   sum(q.idf) AS matched_idf
            FROM candidates JOIN chunks c ON c.id = candidates.id,
                 LATERAL (SELECT lexeme, greatest(coalesce(cardinality(positions), 0), 1) AS tf
                          FROM unnest(ts_filter(setweight(c.tsv, 'D', %(words)s::text[]), '{{d}}'))) u
                 JOIN unnest(%(words)s::text[], %(idfs)s::float8[]) AS q(word, idf) ON q.word = u.lexeme
            GROUP BY c.id)
        SELECT {cols}, s.score AS text_score, s.matched_idf, {sim} AS similarity
        FROM scored s JOIN chunks c ON c.id = s.id JOIN documents d ON d.id = c.document_id
        ORDER BY s.score DESC, c.id
        LIMIT %(k)s
    """).format(cols=columns, where=where, sim=similarity, k1=sql.Literal(K1), k1plus=sql.Literal(K1 + 1),
                b=sql.Literal(B), one_b=sql.Literal(1 - B))
