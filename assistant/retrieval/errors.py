"""Errors a user can cause or fix, each carrying a one-line message that says what to do.

Everything user-facing (CLI, chat) catches `AssistantError` and prints `str(err)`; anything
else is a bug and may show a traceback in logs, never in the chat.
"""

from __future__ import annotations


class AssistantError(Exception):
    """Base class: `str(err)` is a single line fit to show to a user."""


class ConfigError(AssistantError):
    """A setting is missing or invalid (names the environment variable to fix)."""


class QueryError(AssistantError):
    """The question or a filter cannot be searched as given."""


class EmbeddingError(AssistantError):
    """The embedding provider failed; `retryable` says whether a later try may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class CircuitOpenError(EmbeddingError):
    """The provider failed repeatedly, so it is not being called for a while (no request was made)."""


class DatabaseError(AssistantError):
    """The database is unreachable, misconfigured or lacks pgvector."""


class ModelMismatchError(DatabaseError):
    """The database was built with another embedding model or dimension."""


class IngestError(AssistantError):
    """One file could not be loaded (bad type, corrupt, binary, empty); the run goes on."""
