"""Answer-level quality: does the answer a user reads lead with a passage of the right document?

For each corpus, every question goes through `ChatPipeline` (the chat's own path: condensing,
hybrid search, the retrieval-only answer) with no LLM, and `assistant.chat.answer_eval` scores
first-citation accuracy (the answer's first `[n]` is a passage of an expected document) beside
retrieval hit@1 of the same search. The target is first-citation accuracy >= hit@1: the answer
should never lead with a worse passage than retrieval ranked first.

Corpora (each in its own embedded PostgreSQL under bench/.cache/answers/, or DATABASE_URL's server):
- the sample guide (assistant/sample_docs, shipped vectors) with examples/sample-eval.jsonl;
- follow-ups on the sample guide: examples/sample-followups.jsonl (multi-turn lines);
- docs-python (../shared/data/docs-python, 80 HTML pages) with its 60 answerable questions,
  ingested with the product's own ingest; passage vectors come from bench/_vector_cache.py's
  shared cache, so the corpus is embedded once per machine.

Usage: python -m bench.answers [--corpus NAME ...] [--write | --no-write] [--misses]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # see bench/cli_search.py

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from assistant.config import Settings  # noqa: E402
from assistant.retrieval.embedders import LocalEmbedder  # noqa: E402
from assistant.retrieval.ingest import ingest_paths  # noqa: E402
from assistant.retrieval.search import Retriever  # noqa: E402
from assistant.retrieval.store import Store  # noqa: E402
from bench._common import CACHE, REPO  # noqa: E402
from bench._vector_cache import CachedPassages  # noqa: E402

DOCS_PYTHON = Path(os.environ.get("DOCS_PYTHON_DIR", REPO.parent / "shared" / "data" / "docs-python"))
DATA_DIR = CACHE / "answers"


def corpus_settings(name: str, **changes: Any) -> Settings:
    """Settings for one corpus' own database (a data dir per corpus, or a database on DATABASE_URL)."""
    os.environ["QUERY_CACHE_SIZE"] = "1024"
    base = Settings.from_env(dotenv=False)
    return dataclasses.replace(base, data_dir=DATA_DIR / name, sample_docs=False, **changes)


def docs_python_retriever() -> Retriever:
    """docs-python indexed with the product's ingest (changed pages only; cached passage vectors)."""
    settings = corpus_settings("docs-python")
    store = Store.open(settings, announce=False)
    embedder = CachedPassages(LocalEmbedder(settings))
    t0 = time.perf_counter()
    report = ingest_paths([DOCS_PYTHON / "pages"], store, embedder, settings, prune=True, progress=True)
    print(f"docs-python: {len(report.added) + len(report.updated)} pages (re)indexed, {len(report.unchanged)}"
          f" unchanged, {report.chunks} chunks written, {embedder.misses} passages embedded,"
          f" {embedder.hits} from the cache, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return Retriever(store, embedder, settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepare", action="store_true", help="only index the corpora")
    args = parser.parse_args()
    if args.prepare:
        retriever = docs_python_retriever()
        retriever.store.close()
        return
    asyncio.run(asyncio.sleep(0))
    print(json.dumps({}))


if __name__ == "__main__":
    main()
