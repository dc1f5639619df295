"""A passage-vector cache shared by every benchmark run on this machine.

Embedding a corpus with the local 4-bit engine costs minutes to an hour on two cores, and most
benchmark runs embed the same texts again (a retrieval change does not change the chunks). This
wraps any `Embedder` so that `embed_passages` only computes texts it has never seen, keyed by
sha256 of (model, text), in one SQLite file outside the repository (`BENCH_VECTOR_CACHE`, default
`~/.cache/doc-assistant/bench-vectors.sqlite`), so clones and worktrees share it. Queries are not
cached here (the product has its own query cache, and query time is often what a bench measures).
Vectors are stored as float32 bytes exactly as the wrapped embedder returned them.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_PATH = Path.home() / ".cache" / "doc-assistant" / "bench-vectors.sqlite"


def cache_path() -> Path:
    return Path(os.environ.get("BENCH_VECTOR_CACHE") or DEFAULT_PATH)


class CachedPassages:
    """An Embedder whose `embed_passages` is served from the shared cache where it can be."""

    def __init__(self, inner: Any, path: Path | None = None) -> None:
        self.inner = inner
        self.model = inner.model
        self.dim = inner.dim
        self.provider = getattr(inner, "provider", "?")
        self.path = path or cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS vec (key TEXT PRIMARY KEY, v BLOB NOT NULL)")
        self._db.commit()
        self.hits = 0
        self.misses = 0

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.model}\x00passage\x00{text}".encode("utf-8", "surrogatepass")).hexdigest()

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        keys = [self._key(t) for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        found: dict[str, bytes] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                part = keys[start:start + 500]
                marks = ",".join("?" * len(part))
                found.update(self._db.execute(f"SELECT key, v FROM vec WHERE key IN ({marks})", part).fetchall())
        todo = [i for i, k in enumerate(keys) if k not in found]
        for i, k in enumerate(keys):
            if k in found:
                out[i] = np.frombuffer(found[k], dtype=np.float32)
        if todo:
            vectors = np.asarray(self.inner.embed_passages([texts[i] for i in todo]), dtype=np.float32)
            out[todo] = vectors
            with self._lock:
                self._db.executemany("INSERT OR REPLACE INTO vec VALUES (?, ?)",
                                     [(keys[i], vectors[j].tobytes()) for j, i in enumerate(todo)])
                self._db.commit()
        self.hits += len(texts) - len(todo)
        self.misses += len(todo)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)

    async def aembed_query(self, text: str) -> np.ndarray:
        return await self.inner.aembed_query(text)

    def close(self) -> None:
        self._db.close()
        self.inner.close()

    def __repr__(self) -> str:
        return f"CachedPassages({self.inner!r}, {self.path})"
