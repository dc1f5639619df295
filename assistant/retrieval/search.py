"""The Retriever: vector, full-text and hybrid (reciprocal rank fusion) search over the store.

Hybrid is the default: e5 vectors find paraphrases, full-text finds exact names, codes and rare
words, and RRF needs no score calibration between the two. When the embedder fails, the
retriever answers from full-text alone and marks the result `degraded` instead of raising.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.retrieval.errors import CircuitOpenError, EmbeddingError, QueryError
from assistant.retrieval.filters import Filters, parse_filters
from assistant.retrieval.sanitize import storable
from assistant.retrieval.types import SEARCH_MODES, Hit, SearchResult

if TYPE_CHECKING:
    from assistant.config import Settings
    from assistant.retrieval.embedders import Embedder
    from assistant.retrieval.store import Store

log = logging.getLogger(__name__)

QUERY_MAX_TOKENS = 512  # the e5 window, prefix and special tokens included
_CHEAP_CHARS = 400  # below this many characters a query cannot reach 512 tokens


FilterSpec = Filters | Mapping[str, Any] | Iterable[str] | None


def rrf_fuse(lists: Iterable[list[Hit]], k: int, rrf_k: int = 60) -> list[Hit]:
    """Reciprocal rank fusion: score = sum over lists of 1 / (rrf_k + rank)."""
    merged: dict[int, Hit] = {}
    scores: dict[int, float] = {}
    for hits in lists:
        for rank, hit in enumerate(hits, 1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + 1.0 / (rrf_k + rank)
            seen = merged.get(hit.chunk_id)
            if seen is None:
                merged[hit.chunk_id] = hit
            else:  # keep what each list knows about the chunk
                seen.vector_rank = seen.vector_rank or hit.vector_rank
                seen.text_rank = seen.text_rank or hit.text_rank
                seen.text_score = seen.text_score if seen.text_score is not None else hit.text_score
                seen.similarity = seen.similarity if seen.similarity is not None else hit.similarity
    order = sorted(merged, key=lambda cid: (-scores[cid], cid))[:k]
    fused = []
    for rank, cid in enumerate(order, 1):
        hit = merged[cid]
        hit.rank, hit.score = rank, scores[cid]
        fused.append(hit)
    return fused


def _log_fallback(err: EmbeddingError) -> None:
    """Warn per failed embedding; with the circuit breaker open the breaker has said it once."""
    if isinstance(err, CircuitOpenError):
        log.debug("embedder paused, full-text search only: %s", err)
    else:
        log.warning("embedding failed, falling back to full-text search: %s", err)


class Retriever:
    """Embeds the query, searches the store, fuses, and times each step."""

    def __init__(self, store: Store, embedder: Embedder, settings: Settings) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings

    # -- input checks ---------------------------------------------------------------------------

    def _prepare(self, query: str, k: int | None, mode: str,
                 filters: FilterSpec) -> tuple[str, int, Filters, list[str]]:
        text = "" if query is None else " ".join(storable(str(query)).split())  # NUL/surrogates break SQL
        if not text:
            raise QueryError("The question is empty: type a few words to search for")
        if mode not in SEARCH_MODES:
            raise QueryError(f"Unknown search mode {mode!r}; use one of {', '.join(SEARCH_MODES)}")
        k = self.settings.top_k if k is None else int(k)
        if not 1 <= k <= 100:
            raise QueryError(f"k must be between 1 and 100, not {k}")
        notices: list[str] = []
        if len(text) > _CHEAP_CHARS:
            from assistant.retrieval.tokens import truncate_to_tokens

            cut, truncated = truncate_to_tokens(text, QUERY_MAX_TOKENS, query=True)
            if truncated:
                notices.append(
                    f"The question was {len(text):,} characters; only its first {len(cut):,} characters"
                    f" (the model's {QUERY_MAX_TOKENS}-token window) were used for search"
                )
                text = cut
        return text, k, parse_filters(filters), notices

    def _pool_size(self, k: int) -> int:
        return max(4 * k, 20)

    # -- search ----------------------------------------------------------------------------------

    def search(self, query: str, *, k: int | None = None, mode: str = "hybrid",
               filters: FilterSpec = None) -> SearchResult:
        """Synchronous search (CLI, benchmarks)."""
        text, k, flt, notices = self._prepare(query, k, mode, filters)
        timings: dict[str, float] = {}
        vector, degraded_reason = None, None
        if mode != "text":
            t0 = time.perf_counter()
            try:
                vector = self.embedder.embed_query(text)
            except EmbeddingError as err:
                degraded_reason = str(err)
                _log_fallback(err)
            timings["embed_ms"] = (time.perf_counter() - t0) * 1000
        return self._search_with_vector(text, k, mode, flt, vector, degraded_reason, notices, timings)

    async def asearch(self, query: str, *, k: int | None = None, mode: str = "hybrid",
                      filters: FilterSpec = None) -> SearchResult:
        """Async search for the chat app: embedding and SQL run off the event loop."""
        text, k, flt, notices = await asyncio.to_thread(self._prepare, query, k, mode, filters)
        timings: dict[str, float] = {}
        vector, degraded_reason = None, None
        if mode != "text":
            t0 = time.perf_counter()
            try:
                vector = await self.embedder.aembed_query(text)
            except EmbeddingError as err:
                degraded_reason = str(err)
                _log_fallback(err)
            timings["embed_ms"] = (time.perf_counter() - t0) * 1000
        return await asyncio.to_thread(
            self._search_with_vector, text, k, mode, flt, vector, degraded_reason, notices, timings
        )

    def _search_with_vector(self, text: str, k: int, mode: str, flt: Filters,
                            vector: np.ndarray | None, degraded_reason: str | None, notices: list[str],
                            timings: dict[str, float]) -> SearchResult:
        t0 = time.perf_counter()
        degraded = mode != "text" and vector is None
        pool = self._pool_size(k)
        if degraded:
            hits = self.store.text_search(text, k, flt)
            for hit in hits:
                hit.rank, hit.score = hit.text_rank or 0, hit.text_score or 0.0
        elif mode == "vector":
            hits = self.store.vector_search(vector, k, flt)
            for hit in hits:
                hit.rank, hit.score = hit.vector_rank or 0, hit.similarity or 0.0
        elif mode == "text":
            hits = self.store.text_search(text, k, flt)
            for hit in hits:
                hit.rank, hit.score = hit.text_rank or 0, hit.text_score or 0.0
        else:
            vec_hits = self.store.vector_search(vector, pool, flt)
            txt_hits = self.store.text_search(text, pool, flt, vector=vector)
            hits = rrf_fuse([vec_hits, txt_hits], k, self.settings.rrf_k)
        timings["search_ms"] = (time.perf_counter() - t0) * 1000
        timings["total_ms"] = sum(v for key, v in timings.items() if key != "total_ms")
        return SearchResult(query=text, mode=mode, hits=hits, degraded=degraded, degraded_reason=degraded_reason,
                            notices=notices, timings_ms=timings)
