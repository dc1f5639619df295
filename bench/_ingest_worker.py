"""Ingest in a fresh interpreter for bench/ingest.py: the product's own steps, timed one by one.

Stdlib only at the top. Usage: python bench/_ingest_worker.py PATH... (ASSISTANT_DATA_DIR set by
the caller to a fresh folder). Prints one JSON object on stdout.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


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
    from assistant.config import Settings
    from assistant.retrieval.embedders import make_embedder
    from assistant.retrieval.ingest import ingest_paths
    from assistant.retrieval.store import Store

    out["import_s"] = time.perf_counter() - t0
    settings = Settings.from_env(dotenv=False)
    t0 = time.perf_counter()
    store = Store.open(settings, announce=False)  # fresh folder: initdb, start, migrate
    out["store_open_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    embedder = TimedEmbedder(make_embedder(settings))
    out["model_load_s"] = time.perf_counter() - t0
    writes = Stopwatch(store.replace_document)
    store.replace_document = writes  # type: ignore[method-assign]
    report = ingest_paths(paths, store, embedder, settings, progress=False, log=lambda _msg: None)  # type: ignore[arg-type]
    status = store.status()
    store.close()
    out.update(
        ingest_s=report.seconds, docs=len(report.added) + len(report.updated), failed=len(report.failed),
        chunks=report.chunks, tokens=status["tokens"], embed_s=embedder.embed_passages.seconds,
        embed_calls=embedder.embed_passages.calls, store_s=writes.seconds,
        maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
