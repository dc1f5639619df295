"""The product's errors, as the retrieval package has always exported them.

They are defined once in `assistant.errors`, a foundation below both this package and the
modules above it (config, auth), so no arrow runs from those up into retrieval.
"""

from assistant.errors import (
    SUBSTRING_SECRET_LEN,
    AssistantError,
    CircuitOpenError,
    ConfigError,
    DatabaseError,
    EmbeddingError,
    IngestError,
    ModelMismatchError,
    QueryError,
    hide_url_credentials,
    public_url,
    redact_secrets,
)

__all__ = [
    "SUBSTRING_SECRET_LEN",
    "AssistantError",
    "CircuitOpenError",
    "ConfigError",
    "DatabaseError",
    "EmbeddingError",
    "IngestError",
    "ModelMismatchError",
    "QueryError",
    "hide_url_credentials",
    "public_url",
    "redact_secrets",
]
