"""How ingest's passage batches get embedded, and how fast (for the plan's estimate).

With the local model and `workers` > 1 (the command line), a `PassagePool` of processes, one per
core; otherwise the embedder itself in a background thread, one batch ahead, so that the database
writes of one batch's documents overlap the embedding of the next (remote providers keep their
retry, deadline and breaker semantics: `embed_passages` is called per batch, as before).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.retrieval.types import embedding_text

if TYPE_CHECKING:
    from assistant.config import Settings
    from assistant.retrieval.embedders import Embedder
    from assistant.retrieval.ingest_plan import IngestPlan
    from assistant.retrieval.local_passages import PassagePool

# Chunks per second assumed for remote providers (no calibration: a trial batch would spend the
# user's credit before they said yes). Rough: a hosted API embeds a batch of 32 in ~1-2 s.
ASSUMED_RATES = {"hf": 20.0, "openai": 30.0}

Batches = Callable[[Iterator[list[str]]], Iterator[np.ndarray]]


def failing(exc: Exception) -> Batches:
    """An embed_batches that raises `exc` at the first batch (an error met while measuring)."""

    def run(_batches: Iterator[list[str]]) -> Iterator[np.ndarray]:
        raise exc
        yield  # pragma: no cover - makes this a generator

    return run


def batched(texts: Iterator[str], size: int) -> Iterator[list[str]]:
    while batch := list(islice(texts, size)):
        yield batch


class PassageEngine:
    """How passages get embedded: a process pool for the local model (workers > 1), else the
    embedder itself in a background thread one batch ahead (the database writes of one batch's
    documents overlap the embedding of the next); and the speed measurement for the plan."""

    def __init__(self, embedder: Embedder, settings: Settings, workers: int) -> None:
        self.embedder = embedder
        self.pooled = workers > 1 and _is_local_model(embedder)
        self.workers = workers if self.pooled else 1
        self.pool: PassagePool | None = None
        provider = getattr(embedder, "provider", "?")
        if self.pooled:
            from assistant.retrieval.local_passages import POOL_BATCH

            self.batch_size = POOL_BATCH
            self.description = f"local model, {workers} processes"
        else:
            self.batch_size = settings.embedding_batch_size
            self.description = "local model, 1 process" if provider == "local" else f"{provider} provider"
        self.provider = provider

    def start(self) -> None:
        if self.pooled and self.pool is None:
            from assistant.retrieval.local_passages import PassagePool

            self.pool = PassagePool(self.workers, self.batch_size)

    def embed_batches(self, batches: Iterator[list[str]]) -> Iterator[np.ndarray]:
        if self.pooled:
            self.start()
            assert self.pool is not None
            return self.pool.map(batches)
        return _one_ahead(self.embedder.embed_passages, batches)

    def calibrate(self, plan: IngestPlan) -> np.ndarray | Exception | None:
        """Set plan.rate; for the local model, by embedding the first batch per process (timed,
        kept for the run; an error is kept too, for the run to report where it belongs).
        Remote providers get an assumed rate and embed nothing yet."""
        if self.provider != "local":
            plan.rate = ASSUMED_RATES.get(self.provider)
            return None
        if self.pool is not None:
            self.pool.wait_ready()  # the model load is not embedding time
        n = min(plan.chunks, self.batch_size * self.workers)
        first = [(p.doc, p.chunks) for p in plan.documents]
        t0 = time.perf_counter()
        texts = islice((embedding_text(doc.title, c) for doc, chunks in first for c in chunks), n)
        it = self.embed_batches(batched(texts, self.batch_size))
        try:
            vectors = np.concatenate(list(it))
        except Exception as exc:  # raised again by the run, at the document it hits
            return exc
        finally:
            getattr(it, "close", lambda: None)()
        seconds = max(time.perf_counter() - t0, 1e-6)
        tokens = _first_tokens(plan, n)
        # Chunks differ in length: scale by tokens, then express the rate in chunks per second.
        plan.rate = (plan.chunks / (plan.tokens / (tokens / seconds))) if tokens and plan.tokens else n / seconds
        plan.measured_on = n
        return vectors

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None


def _first_tokens(plan: IngestPlan, n: int) -> int:
    total = 0
    for p in plan.documents:
        for c in p.chunks:
            if n <= 0:
                return total
            total += c.token_count
            n -= 1
    return total


def _is_local_model(embedder: Any) -> bool:
    """True for the local model itself (maybe behind the query cache), not for wrappers that
    answer passages in their own way (shipped or cached vectors, test doubles)."""
    from assistant.retrieval.embedders import LocalEmbedder, QueryCache

    while isinstance(embedder, QueryCache):
        embedder = embedder.inner
    return isinstance(embedder, LocalEmbedder)


_DONE = object()


def _one_ahead(embed: Callable[[list[str]], np.ndarray], batches: Iterator[list[str]]) -> Iterator[np.ndarray]:
    """`map(embed, batches)` computed one batch ahead in a thread; closing it stops the thread
    after the batch in hand. Errors reach the caller at the batch that raised them."""
    out: queue.Queue[Any] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for batch in batches:
                if stop.is_set() or not put((embed(batch), None)):
                    return
        except BaseException as exc:  # handed to the consumer
            put((None, exc))
            return
        put(_DONE)

    thread = threading.Thread(target=run, name="ingest-embed", daemon=True)
    thread.start()
    try:
        while True:
            try:  # with a timeout: Ctrl-C reaches a waiting main thread only when it wakes up
                item = out.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            vectors, exc = item
            if exc is not None:
                raise exc
            yield vectors
    finally:
        stop.set()
