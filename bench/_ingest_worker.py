"""Ingest in a fresh interpreter for bench/ingest.py: the product's own steps, timed one by one.

Stdlib only at the top. Usage: python -m bench._ingest_worker PATH... (ASSISTANT_DATA_DIR set by
the caller to a fresh folder; the embedder from EMBEDDING_PROVIDER and friends, as the product
reads them). Prints one JSON object on stdout. `assistant` is imported from wherever the path
finds it first: this checkout (working directory the repository root), or an older commit's copy
(bench/ingest.py --baseline starts the worker in that copy with bench._common.source_env).

The split: `parse_s` is the loaders (`load_file`), `chunk_s` the chunker (`chunk_document`),
`embed_s` the embedder's `embed_passages`, `write_s` the store's `replace_document` (one
transaction and a binary COPY per document), `lookup_s` the unchanged-file check
(`document_hash`); whatever `ingest_paths` spends outside those is the rest.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from typing import Any


class Stopwatch:
    """Wraps a callable and adds up the seconds spent in it."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1


class TimedEmbedder:
    """An Embedder proxy that times embed_passages (everything else passes through)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.embed_passages = Stopwatch(inner.embed_passages)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def main() -> None:
    paths = sys.argv[1:]
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    import assistant.retrieval.ingest as ingest_module
    from assistant.config import Settings
    from assistant.retrieval.embedders import make_embedder
    from assistant.retrieval.store import Store

    out["import_s"] = time.perf_counter() - t0
    settings = Settings.from_env(dotenv=False)
    t0 = time.perf_counter()
    store = Store.open(settings, announce=False)  # fresh folder: initdb, start, migrate
    out["store_open_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    embedder = TimedEmbedder(make_embedder(settings))
    out["model_load_s"] = time.perf_counter() - t0
    parse = ingest_module.load_file = Stopwatch(ingest_module.load_file)  # type: ignore[assignment]
    chunk = ingest_module.chunk_document = Stopwatch(ingest_module.chunk_document)  # type: ignore[assignment]
    writes = store.replace_document = Stopwatch(store.replace_document)  # type: ignore[method-assign]
    lookups = store.document_hash = Stopwatch(store.document_hash)  # type: ignore[method-assign]
    report = ingest_module.ingest_paths(paths, store, embedder, settings, progress=False,  # type: ignore[arg-type]
                                        log=lambda _msg: None)
    status = store.status()
    store.close()
    out.update(
        ingest_s=report.seconds, docs=len(report.added) + len(report.updated), failed=len(report.failed),
        chunks=report.chunks, tokens=status["tokens"], embed_s=embedder.embed_passages.seconds,
        embed_calls=embedder.embed_passages.calls, parse_s=parse.seconds, chunk_s=chunk.seconds,
        write_s=writes.seconds, lookup_s=lookups.seconds, store_s=writes.seconds,
        maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
