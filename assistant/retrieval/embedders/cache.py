"""An LRU cache of query vectors in front of any Embedder."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from assistant.retrieval.embedders.base import Embedder


class QueryCache:
    """LRU cache of query vectors in front of any Embedder (users repeat questions; 1.5 KB each).

    Keyed by the exact query text; passages pass through uncached (ingest sees each once).
    Stored arrays are read-only and callers get copies, so nobody can corrupt an entry.
    `size=0` disables storing but keeps counting misses.
    """

    def __init__(self, inner: Embedder, size: int) -> None:
        if size < 0:
            raise ValueError("cache size must be >= 0")
        self.inner = inner
        self.provider = inner.provider
        self.model = inner.model
        self.dim = inner.dim
        self.size = size
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def _lookup(self, text: str) -> np.ndarray | None:
        with self._lock:
            vector = self._entries.get(text)
            if vector is None:
                self.misses += 1
                return None
            self._entries.move_to_end(text)
            self.hits += 1
            return vector.copy()

    def _store(self, text: str, vector: np.ndarray) -> np.ndarray:
        if self.size:
            frozen = np.array(vector, dtype=np.float32)
            frozen.flags.writeable = False
            with self._lock:
                self._entries[text] = frozen
                self._entries.move_to_end(text)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return vector

    def embed_query(self, text: str) -> np.ndarray:
        """Cached embed_query (the embedding runs outside the lock)."""
        cached = self._lookup(text)
        return cached if cached is not None else self._store(text, self.inner.embed_query(text))

    async def aembed_query(self, text: str) -> np.ndarray:
        """Cached aembed_query: a hit answers without a thread hop."""
        cached = self._lookup(text)
        return cached if cached is not None else self._store(text, await self.inner.aembed_query(text))

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Not cached: passed straight to the wrapped embedder."""
        return self.inner.embed_passages(texts)

    def clear(self) -> None:
        """Drop all entries (counters are kept)."""
        with self._lock:
            self._entries.clear()

    def close(self) -> None:
        """Close the wrapped embedder and drop the entries."""
        self.clear()
        self.inner.close()

    def __repr__(self) -> str:
        return f"QueryCache({self.inner!r}, size={self.size}, hits={self.hits}, misses={self.misses})"
