"""Provider name -> embedder class, and `make_embedder`, the one way the product builds an embedder.

The provider names themselves are declared in `assistant.embedding_models.EMBEDDING_PROVIDERS`
(config validates against them without importing httpx or numpy); this table names a class for
each (tests/test_embedding_models.py checks that the two agree).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from assistant.embedding_models import provider_problem
from assistant.retrieval.embedders.base import Embedder
from assistant.retrieval.embedders.cache import QueryCache
from assistant.retrieval.embedders.hf import HFEmbedder
from assistant.retrieval.embedders.local import LocalEmbedder
from assistant.retrieval.embedders.openai_compat import OpenAIEmbedder
from assistant.retrieval.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from assistant.config import Settings

# Each class checks its settings when built (through `base.check_choice`).
PROVIDERS: dict[str, Callable[[Settings], Embedder]] = {
    cls.provider: cls for cls in (LocalEmbedder, HFEmbedder, OpenAIEmbedder)
}


def make_embedder(settings: Settings) -> Embedder:
    """The configured provider wrapped in a QueryCache of QUERY_CACHE_SIZE entries."""
    build = PROVIDERS.get(settings.embedding_provider)
    if build is None:
        raise ConfigError(provider_problem(settings.embedding_provider) or "unregistered EMBEDDING_PROVIDER")
    return QueryCache(build(settings), settings.query_cache_size)
