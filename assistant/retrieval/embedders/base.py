"""The Embedder protocol and what every provider shares: input checks, output normalising, and
the one check of the provider/model/dimension choice (rules in `assistant.embedding_models`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from assistant.embedding_models import embedding_choice_problem
from assistant.retrieval.errors import ConfigError, EmbeddingError

if TYPE_CHECKING:  # config imports retrieval.errors; keep the runtime import graph one-way
    from assistant.config import Settings


@runtime_checkable
class Embedder(Protocol):
    """What retrieval and ingest need from an embedding provider."""

    provider: str  # "local" | "hf" | "openai"
    model: str  # e.g. "intfloat/multilingual-e5-small"
    dim: int  # 384

    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) float32, L2-normalised; the `query: ` prefix is added inside."""
        ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalised; the `passage: ` prefix is added inside."""
        ...

    async def aembed_query(self, text: str) -> np.ndarray:
        """Like embed_query, without blocking the event loop."""
        ...

    def close(self) -> None:
        """Release connections (the local model stays loaded: it is process-wide)."""
        ...


def check_choice(provider: str, settings: Settings) -> None:
    """Raise ConfigError when `settings` cannot work with `provider` (each provider checks on build:
    Settings may be made directly, not only by `Settings.from_env`)."""
    problem = embedding_choice_problem(provider, settings.embedding_model, settings.embedding_dim,
                                       settings.embedding_api_url)
    if problem:
        raise ConfigError(problem)


def text_list(texts: Sequence[str]) -> list[str]:
    """Validate passages: a bare str is a Sequence[str] too, and would embed each character."""
    if isinstance(texts, str):
        raise TypeError("embed_passages takes a sequence of strings, not a single string")
    items = list(texts)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"embed_passages takes strings, got {type(item).__name__}")
    return items


def normalize(vectors: Any, source: str) -> np.ndarray:
    """L2-normalise rows in float32; never trust a provider to have done it."""
    arr = np.asarray(vectors, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise EmbeddingError(f"{source} returned an embedding with NaN or infinite values")
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise EmbeddingError(f"{source} returned an all-zero embedding")
    return (arr / norms).astype(np.float32, copy=False)
