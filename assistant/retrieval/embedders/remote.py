"""What the HTTP providers share: batching, the e5 prefixes, answer checks, the circuit breaker.

Query embeddings pass a circuit breaker (`breaker.py`): after EMBEDDING_BREAKER_FAILURES failed
calls in a row the provider is left alone for EMBEDDING_BREAKER_COOLDOWN seconds, so a search
during an outage falls back to full-text at once. Passages (ingest) bypass it: an ingest must see
the provider's own error and stop, never skip work because of earlier query failures.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from assistant.embedding_models import model_facts
from assistant.retrieval.breaker import CircuitBreaker
from assistant.retrieval.embedders.base import normalize, text_list
from assistant.retrieval.embedders.http_retry import RetryingPoster
from assistant.retrieval.errors import ConfigError, EmbeddingError

if TYPE_CHECKING:
    from assistant.config import Settings


def check_url(url: str, var: str, example: str) -> None:
    """ConfigError naming `var` unless `url` is an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{var}={url!r} is not an http(s) URL; use e.g. {example}")


class RemoteEmbedder(ABC):
    """Shared HTTP plumbing: one `RetryingPoster`, batching, prefixes, checks of the answer.

    Subclasses say how to build a request body, how to read the answer, and how to word the
    errors that retrying cannot fix.
    """

    provider = ""
    name = ""  # how the service is called in messages, e.g. "Hugging Face API"
    url_var = ""  # the variable that sets its URL

    def __init__(self, settings: Settings, url: str, token: str | None) -> None:
        self.model = settings.embedding_model
        self.dim = settings.embedding_dim
        facts = model_facts(self.model, self.dim)
        self._query_prefix, self._passage_prefix = facts.query_prefix, facts.passage_prefix
        self._has_token = bool(token)
        self._deadline = settings.embedding_deadline
        self._query_deadline = settings.query_embedding_deadline
        self._batch_size = settings.embedding_batch_size
        self._http = RetryingPoster(name=self.name, url=url, url_var=self.url_var, token=token,
                                    timeout=settings.embedding_timeout, fatal=self._fatal_message)
        self.url = url
        self.shown_url = self._http.shown_url  # for messages and logs: no credentials or query string
        self.breaker = CircuitBreaker(self.name, failures=settings.embedding_breaker_failures,
                                      cooldown=settings.embedding_breaker_cooldown)

    # -- subclass hooks
    @abstractmethod
    def _body(self, texts: list[str], single: bool) -> dict[str, Any]:
        """The JSON request body for these (already prefixed) texts."""

    @abstractmethod
    def _vectors(self, data: Any, n: int) -> np.ndarray:
        """The (n, dim) vectors in a decoded response, or EmbeddingError."""

    @abstractmethod
    def _fatal_message(self, status: int, detail: str) -> str:
        """One line for a status that retrying cannot fix, naming what to change."""

    # -- public API
    def embed_query(self, text: str) -> np.ndarray:
        """Embed one question through the circuit breaker; `query: ` is prepended here."""
        body = self._query_prefix + text
        return self.breaker.call(lambda: self._embed([body], single=True, query=True)[0])

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Embed chunks in batches of EMBEDDING_BATCH_SIZE; each batch gets its own deadline.

        The deadline is per request batch, not per call: an ingest of many batches may rightly
        take longer than EMBEDDING_DEADLINE, while one stuck batch still fails in bounded time.
        """
        items = text_list(texts)
        if not items:
            return np.empty((0, self.dim), dtype=np.float32)
        step = self._batch_size
        parts = [
            self._embed([self._passage_prefix + t for t in items[i : i + step]], single=False)
            for i in range(0, len(items), step)
        ]
        return np.concatenate(parts)

    async def aembed_query(self, text: str) -> np.ndarray:
        """embed_query in a worker thread (httpx.Client is thread-safe; waits may take seconds)."""
        return await asyncio.to_thread(self.embed_query, text)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, url={self.shown_url!r})"

    # -- internals
    def _embed(self, texts: list[str], single: bool, query: bool = False) -> np.ndarray:
        """Embed with retries within the deadline of the call's kind: a question someone waits for
        (QUERY_EMBEDDING_DEADLINE, seconds) or an ingest batch (EMBEDDING_DEADLINE)."""
        limit = ("QUERY_EMBEDDING_DEADLINE", self._query_deadline) if query else ("EMBEDDING_DEADLINE", self._deadline)
        vectors = self._vectors(self._http.post(self._body(texts, single), limit), len(texts))
        n = len(texts)
        if vectors.ndim != 2 or vectors.shape[0] != n:
            got = vectors.shape[0] if vectors.ndim == 2 else (0 if vectors.size == 0 else "malformed")
            raise EmbeddingError(f"{self.name} returned {got} vectors for {n} text{'s' if n != 1 else ''}")
        if vectors.shape[1] != self.dim:
            raise EmbeddingError(
                f"{self.name} returned vectors of size {vectors.shape[1]}, but EMBEDDING_DIM={self.dim} "
                f"(EMBEDDING_MODEL={self.model}); set the model and dimension that match the database"
            )
        return normalize(vectors, self.name)

