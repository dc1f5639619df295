"""The Hugging Face Inference API provider (feature-extraction pipeline)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.retrieval.embedders.base import check_choice
from assistant.retrieval.embedders.http_retry import one_line
from assistant.retrieval.embedders.remote import RemoteEmbedder, check_url
from assistant.retrieval.errors import EmbeddingError

if TYPE_CHECKING:
    from assistant.config import Settings


def _depth(value: Any) -> int:
    """Nesting depth of a JSON list of numbers (1 = vector); 0 when it isn't one."""
    depth = 0
    while isinstance(value, list):
        if not value:
            return 0
        depth += 1
        value = value[0]
    return depth if isinstance(value, (int, float)) else 0


class HFEmbedder(RemoteEmbedder):
    """Hugging Face Inference API, feature-extraction pipeline (HF_API_URL, HUGGINGFACE_TOKEN).

    Sends `{"inputs": str | [str], "normalize": true, "truncate": true}`. Accepts a 1-D answer
    (one vector for one string), 2-D (one vector per string) or 3-D (token vectors per string,
    mean-pooled here as e5 pools; each string is run unpadded, so every token counts); anything
    else is rejected. Vectors are normalised again here whatever the server did.
    """

    provider = "hf"
    name = "Hugging Face API"
    url_var = "HF_API_URL"

    def __init__(self, settings: Settings) -> None:
        check_choice(self.provider, settings)
        url = settings.hf_api_url.replace("{model}", settings.embedding_model)
        check_url(url, "HF_API_URL", "https://router.huggingface.co/hf-inference/models/{model}/...")
        super().__init__(settings, url, settings.hf_token)

    def _body(self, texts: list[str], single: bool) -> dict[str, Any]:
        return {"inputs": texts[0] if single else texts, "normalize": True, "truncate": True}

    def _vectors(self, data: Any, n: int) -> np.ndarray:
        depth = _depth(data)
        try:
            if depth == 1:
                return np.asarray([data], dtype=np.float32)
            if depth == 2:
                return np.asarray(data, dtype=np.float32)
            if depth == 3:
                if len(data) != n:
                    raise EmbeddingError(f"{self.name} returned token vectors for {len(data)} texts, not {n}")
                pooled = []
                for tokens in data:
                    arr = np.asarray(tokens, dtype=np.float32)
                    if arr.ndim != 2 or arr.shape[0] == 0:
                        raise ValueError("token vectors of one text are not a (tokens, dim) matrix")
                    pooled.append(arr.mean(axis=0))
                return np.stack(pooled)
        except (TypeError, ValueError) as exc:
            raise EmbeddingError(f"{self.name} returned malformed embeddings ({exc})") from None
        if isinstance(data, dict):
            what = f"an object ({one_line(str(data), 80)})"
        else:
            what = f"a {type(data).__name__} that is not a 1-D, 2-D or 3-D list of numbers"
        raise EmbeddingError(
            f"{self.name} returned {what} instead of embeddings; "
            f"check that EMBEDDING_MODEL={self.model} is a feature-extraction model"
        )

    def _fatal_message(self, status: int, detail: str) -> str:
        if status in (401, 403):
            if not self._has_token:
                return (
                    f"Hugging Face API needs a token ({status}): set HUGGINGFACE_TOKEN (or HF_TOKEN) "
                    "to a read token from https://huggingface.co/settings/tokens"
                )
            return (
                f"Hugging Face API rejected the token ({status}): set HUGGINGFACE_TOKEN (or HF_TOKEN) "
                "to a valid read token allowed to call Inference Providers"
            )
        if status == 402:
            return (
                "Hugging Face API says payment required (402): the monthly inference credit of this "
                "account is spent; wait for next month, add credit, or use EMBEDDING_PROVIDER=local"
            )
        if status == 404:
            return (
                f"Hugging Face API has no feature-extraction model at {self.shown_url} (404): "
                f"check EMBEDDING_MODEL={self.model} and HF_API_URL"
            )
        if status == 410:
            return "Hugging Face API endpoint is gone (410): unset HF_API_URL to use the router default"
        if status == 413:
            return "Hugging Face API refused a too-large request (413): lower EMBEDDING_BATCH_SIZE"
        return (
            f"Hugging Face API refused the request (HTTP {status}: {detail or 'no detail'}); "
            f"check EMBEDDING_MODEL={self.model} and HF_API_URL"
        )
