"""The Retriever: vector, full-text (BM25) and hybrid search over the store, and the relevance decision.

Hybrid is the default: e5 vectors find paraphrases, full-text finds exact names, codes and rare
words. The two lists are fused at the level a reader counts (a page; `fuse_units`) with weighted
reciprocal rank fusion, the full-text list weighing by its evidence (`text_weight`). Every
result says whether anything relevant was found (assistant/retrieval/relevance.py). When the
embedder fails, the retriever answers from full-text alone and marks the result `degraded`
instead of raising.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.retrieval import relevance
from assistant.retrieval.errors import CircuitOpenError, EmbeddingError, QueryError
from assistant.retrieval.filters import Filters, parse_filters
from assistant.retrieval.sanitize import storable
from assistant.retrieval.types import SEARCH_MODES, Hit, SearchResult, section_path

if TYPE_CHECKING:
    from assistant.config import Settings
    from assistant.retrieval.embedders import Embedder
    from assistant.retrieval.store import Store

log = logging.getLogger(__name__)

QUERY_MAX_TOKENS = 512  # the e5 window, prefix and special tokens included
_CHEAP_CHARS = 400  # below this many characters a query cannot reach 512 tokens
# The full-text list weighs fully in fusion once its best chunk matches this share of the question's
# IDF mass, and proportionally less below (see `text_weight`).
TEXT_FULL_EVIDENCE = 0.5


FilterSpec = Filters | Mapping[str, Any] | Iterable[str] | None


def rrf_fuse(lists: Iterable[list[Hit]], k: int, rrf_k: int = 60) -> list[Hit]:
    """Reciprocal rank fusion of chunk lists: score = sum over lists of 1 / (rrf_k + rank)."""
    return fuse_chunks([(hits, 1.0) for hits in lists], k, rrf_k)


def fuse_chunks(lists: Iterable[tuple[list[Hit], float]], k: int, rrf_k: int = 60) -> list[Hit]:
    """Weighted RRF of chunk lists (each with its weight), chunk by chunk."""
    merged, scores = _merge(lists, rrf_k, lambda h: h.chunk_id)
    order = sorted(merged, key=lambda cid: (-scores[cid], cid))[:k]
    return _ranked([(merged[cid], scores[cid]) for cid in order])


def reader_unit(hit: Hit) -> tuple[int, int | None, str]:
    """What a reader counts as one place: a top-level section of a document (or of one page of a
    paginated one, a PDF). Sections, not whole pages: an answer must be able to lead with the
    section that answers ("Ingesting documents › Supported file types") even when the page's
    introduction ranks higher; a page's overlapping chunks within one section still collapse."""
    section = section_path(hit.title, hit.heading_path)
    return hit.document_id, hit.page, section[0] if section else ""


def fuse_units(lists: Iterable[tuple[list[Hit], float]], k: int, rrf_k: int = 60) -> list[Hit]:
    """Weighted RRF of the chunk lists, shown at the level a reader cares about (`reader_unit`).

    Chunks are fused first (a chunk both lists found gets both votes), then each unit (a page) is
    shown once, by its best chunk, at that chunk's place: the hits are distinct places to read, and
    a page's second and third chunks do not push other pages out of the top k. With fewer units
    than `k`, the remaining chunks follow in fused order. Measured against fusing lists already
    collapsed to pages (each page at its best rank per list): on docs-python (47 pages) MRR@10
    0.856 against 0.821 and on the sample guide 0.934 against 0.917 (docs/BENCHMARKS.md).
    """
    chunks, scores = _merge(list(lists), rrf_k, lambda h: h.chunk_id)
    order = sorted(chunks, key=lambda cid: (-scores[cid], cid))
    picked: list[int] = []
    seen: set[tuple[int, int | None]] = set()
    for cid in order:
        unit = reader_unit(chunks[cid])
        if unit not in seen:
            seen.add(unit)
            picked.append(cid)
    ranked = [(chunks[cid], scores[cid]) for cid in picked[:k]]
    if len(ranked) < k:  # the extra chunks come after every unit: their scores never rise above the last one's
        shown, floor = set(picked), ranked[-1][1] if ranked else 0.0
        ranked += [(chunks[cid], min(floor, scores[cid])) for cid in order if cid not in shown][:k - len(ranked)]
    return _ranked(ranked)


def _merge(lists: Iterable[tuple[list[Hit], float]], rrf_k: int,
           key: Callable[[Hit], Any]) -> tuple[dict[Any, Hit], dict[Any, float]]:
    """Weighted RRF scores by `key`, and one Hit per key holding what every list knows about it."""
    merged: dict[Any, Hit] = {}
    scores: dict[Any, float] = {}
    for hits, weight in lists:
        for rank, hit in enumerate(hits, 1):
            item = key(hit)
            scores[item] = scores.get(item, 0.0) + weight / (rrf_k + rank)
            seen = merged.get(item)
            if seen is None:
                merged[item] = hit
            elif seen.chunk_id == hit.chunk_id:  # keep what each list knows about the chunk
                seen.vector_rank = seen.vector_rank or hit.vector_rank
                seen.text_rank = seen.text_rank or hit.text_rank
                seen.text_score = seen.text_score if seen.text_score is not None else hit.text_score
                seen.text_matched = seen.text_matched if seen.text_matched is not None else hit.text_matched
                seen.similarity = seen.similarity if seen.similarity is not None else hit.similarity
    return merged, scores


def _ranked(items: list[tuple[Hit, float]]) -> list[Hit]:
    for rank, (hit, score) in enumerate(items, 1):
        hit.rank, hit.score = rank, score
    return [hit for hit, _ in items]


def text_weight(text_hits: list[Hit]) -> float:
    """How much the full-text list may weigh against the vector list (which weighs 1).

    Its evidence is the share of the question's IDF mass that its best chunk matched: a question
    whose words the documents never use (asked in another language, say) gets a list of chunks
    that matched a stray word or two, and that list must not push the vector list down.
    """
    matched = max((h.text_matched or 0.0 for h in text_hits), default=0.0)
    return min(1.0, matched / TEXT_FULL_EVIDENCE)


def _log_fallback(err: EmbeddingError) -> None:
    """Warn per failed embedding; with the circuit breaker open the breaker has said it once."""
    if isinstance(err, CircuitOpenError):
        log.debug("embedder paused, full-text search only: %s", err)
    else:
        log.warning("embedding failed, falling back to full-text search: %s", err)


@dataclass
class _Query:
    """One search on its way through the steps: the checked input, the query vector, the timings."""

    text: str
    k: int
    mode: str
    filters: Filters
    notices: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    vector: np.ndarray | None = None
    degraded_reason: str | None = None

    @property
    def wants_vector(self) -> bool:
        return self.mode != "text"

    @contextmanager
    def embedding(self) -> Iterator[None]:
        """Times the embedding; a failed one leaves `vector` None (full-text fallback) with its reason."""
        t0 = time.perf_counter()
        try:
            yield
        except EmbeddingError as err:
            self.degraded_reason = str(err)
            _log_fallback(err)
        finally:
            self.timings["embed_ms"] = (time.perf_counter() - t0) * 1000


class Retriever:
    """Embeds the query, searches the store, fuses, and times each step."""

    def __init__(self, store: Store, embedder: Embedder, settings: Settings) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.calibrator = relevance.Calibrator(store, embedder)

    # -- input checks ---------------------------------------------------------------------------

    def _prepare(self, query: str, k: int | None, mode: str, filters: FilterSpec) -> _Query:
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
        return _Query(text, k, mode, parse_filters(filters), notices)

    def _pool_size(self, k: int) -> int:
        return max(4 * k, 40)

    # -- search ----------------------------------------------------------------------------------
    # `search` and `asearch` differ only in how they call the embedder: each step is written once,
    # in `_prepare`, `_Query.embedding` and `_search_store`.

    def search(self, query: str, *, k: int | None = None, mode: str = "hybrid",
               filters: FilterSpec = None) -> SearchResult:
        """Synchronous search (CLI, benchmarks)."""
        q = self._prepare(query, k, mode, filters)
        if q.wants_vector:
            with q.embedding():
                q.vector = self.embedder.embed_query(q.text)
        return self._search_store(q)

    async def asearch(self, query: str, *, k: int | None = None, mode: str = "hybrid",
                      filters: FilterSpec = None) -> SearchResult:
        """Async search for the chat app: embedding and SQL run off the event loop."""
        q = await asyncio.to_thread(self._prepare, query, k, mode, filters)
        if q.wants_vector:
            with q.embedding():
                q.vector = await self.embedder.aembed_query(q.text)
        return await asyncio.to_thread(self._search_store, q)

    def _search_store(self, q: _Query) -> SearchResult:
        text, k, mode, flt, vector, timings = q.text, q.k, q.mode, q.filters, q.vector, q.timings
        t0 = time.perf_counter()
        degraded = mode != "text" and vector is None
        pool = self._pool_size(k)
        vec_hits: list[Hit] = []
        txt_hits: list[Hit] = []
        # The question's words and their statistics: full-text ranks with them and the calibrated
        # relevance decision weighs how many the corpus knows, so they are looked up once.
        needs_terms = degraded or mode != "vector" or self.settings.min_similarity is None
        terms = self.store.query_terms(text) if needs_terms else None
        if degraded or mode == "text":
            txt_hits = self.store.text_search(text, pool, flt, terms=terms)
            hits = txt_hits[:k]
            for hit in hits:
                hit.rank, hit.score = hit.text_rank or 0, hit.text_score or 0.0
        elif mode == "vector":
            vec_hits = self.store.vector_search(vector, max(k, relevance.DEPTH), flt)
            hits = vec_hits[:k]
            for hit in hits:
                hit.rank, hit.score = hit.vector_rank or 0, hit.similarity or 0.0
        else:
            vec_hits = self.store.vector_search(vector, pool, flt)
            txt_hits = self.store.text_search(text, pool, flt, vector=vector, terms=terms)
            hits = fuse_units([(vec_hits, 1.0), (txt_hits, text_weight(txt_hits))], k, self.settings.rrf_k)
        timings["search_ms"] = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        calibration, words = None, None
        if vec_hits and self.settings.min_similarity is None:
            calibration = self.calibrator.get()
            assert terms is not None  # looked up above whenever the calibrated decision runs
            words = terms.unknown_share, terms.known_share
        decision = relevance.decide(calibration, vec_hits, txt_hits, min_similarity=self.settings.min_similarity,
                                    degraded=degraded, words=words)
        timings["relevance_ms"] = (time.perf_counter() - t0) * 1000
        timings["total_ms"] = sum(v for key, v in timings.items() if key != "total_ms")
        return SearchResult(query=text, mode=mode, hits=hits, degraded=degraded, degraded_reason=q.degraded_reason,
                            notices=q.notices, timings_ms=timings, relevant=decision.relevant and bool(hits),
                            relevance_reason=decision.reason if hits else "no passage matched the question")
