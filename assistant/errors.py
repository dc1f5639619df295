"""Errors a user can cause or fix, each carrying a one-line message that says what to do,
and the text sanitising that keeps secrets out of those messages and of logs.

Everything user-facing (CLI, chat) catches `AssistantError` and prints `str(err)`; anything
else is a bug and may show a traceback in logs, never in the chat. A foundation: stdlib only,
imported by config, auth, the retrieval package and the chat alike (`assistant.retrieval.errors`
re-exports these names for the modules that have always imported them from there).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

# A secret this long is taken out wherever it occurs; a shorter one only where it stands as a whole
# token, so a one-letter password "p" does not turn "port 1 failed" into "***ort 1 failed".
# (A short secret inside a longer word is not that secret: the word shows nothing of it.)
SUBSTRING_SECRET_LEN = 8


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


def redact_secrets(text: str, secrets: Iterable[str | None], mask: str = "***") -> str:
    """`text` with every secret replaced by `mask`, longest first (see SUBSTRING_SECRET_LEN)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        if len(secret) >= SUBSTRING_SECRET_LEN:
            text = text.replace(secret, mask)
            continue
        head = r"(?<!\w)" if re.match(r"\w", secret[0]) else ""  # a token edge only where the secret
        tail = r"(?!\w)" if re.match(r"\w", secret[-1]) else ""  # itself has a word character
        text = re.sub(head + re.escape(secret) + tail, lambda _: mask, text)
    return text


def public_url(url: str) -> str:
    """A service URL fit for messages and logs: no `user:password@`, query string or fragment.

    People put API keys there (`https://user:key@host/v1`, `?api_key=...`); the host and path are
    what a reader needs to find the misconfigured setting.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        host = f"[{host}]" if ":" in host else host  # IPv6
        netloc = host if parts.port is None else f"{host}:{parts.port}"
    except ValueError:
        return "an invalid URL"
    if not parts.scheme or not host:
        return url.split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class _PublicUrls(logging.Filter):
    """Rewrites URL arguments of log records with `public_url` (httpx logs every request's URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(public_url(str(a)) if str(a).startswith(("http://", "https://")) else a
                                for a in record.args)
        return True


def hide_url_credentials(logger_name: str) -> None:
    """Keep `user:password@` and query strings of request URLs out of `logger_name`'s lines."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _PublicUrls) for f in logger.filters):
        logger.addFilter(_PublicUrls())
