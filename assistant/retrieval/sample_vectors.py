"""Precomputed passage vectors for the built-in sample corpus, shipped with the package.

Embedding the sample corpus locally takes ~15-20 s on two cores; with these vectors the first
start (and a Render cold start on an empty database) indexes it in about a second. Vectors are
keyed by the sha256 of the exact text embedded, so an edited page simply misses the cache and
is embedded as usual. Regenerate after editing the sample docs:

    python -m assistant.retrieval.sample_vectors
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from assistant.embedding_models import LOCAL_MODEL

if TYPE_CHECKING:
    from assistant.retrieval.embedders import Embedder

SAMPLE_DOCS_DIR = Path(__file__).resolve().parents[1] / "sample_docs"
VECTORS_PATH = SAMPLE_DOCS_DIR / "vectors.npz"
VECTORS_MODEL = LOCAL_MODEL.name  # the shipped vectors are made by `build` with LocalEmbedder


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def load_vectors(path: Path = VECTORS_PATH) -> dict[str, np.ndarray]:
    """key -> vector; empty when the file is missing or unreadable (then we just embed)."""
    try:
        with np.load(path) as data:
            keys, vectors = data["keys"], data["vectors"]
    except (OSError, KeyError, ValueError):
        return {}
    return {str(k): v for k, v in zip(keys, vectors.astype(np.float32), strict=True)}


class PrecomputedPassages:
    """An Embedder wrapper that answers passages from the shipped vectors when it can."""

    def __init__(self, inner: Embedder, vectors: dict[str, np.ndarray]) -> None:
        self.inner = inner
        self.provider, self.model, self.dim = inner.provider, inner.model, inner.dim
        self.vectors = vectors if inner.model == VECTORS_MODEL else {}
        self.reused = 0

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        keys = [text_key(t) for t in texts]
        missing = [t for t, k in zip(texts, keys, strict=True) if k not in self.vectors]
        fresh = dict(zip([text_key(t) for t in missing], self.inner.embed_passages(missing), strict=True)) \
            if missing else {}
        self.reused += len(texts) - len(missing)
        return np.stack([self.vectors.get(k, fresh.get(k)) for k in keys]).astype(np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)

    async def aembed_query(self, text: str) -> np.ndarray:
        return await self.inner.aembed_query(text)

    def close(self) -> None:
        self.inner.close()


def build(path: Path = VECTORS_PATH) -> int:
    """Embed every sample chunk with the local model and write the vectors file."""
    from assistant.config import Settings
    from assistant.retrieval.chunking import chunk_document
    from assistant.retrieval.embedders import LocalEmbedder
    from assistant.retrieval.loaders import load_file
    from assistant.retrieval.types import embedding_text

    settings = Settings.from_env()
    embedder = LocalEmbedder(settings)
    texts: list[str] = []
    for file in sorted(SAMPLE_DOCS_DIR.glob("*.md")):
        doc = load_file(file)
        chunks = chunk_document(doc, max_tokens=settings.chunk_tokens, overlap_tokens=settings.chunk_overlap)
        texts += [embedding_text(doc.title, c) for c in chunks]
    vectors = embedder.embed_passages(texts)
    np.savez_compressed(path, keys=np.array([text_key(t) for t in texts]), vectors=vectors.astype(np.float32))
    return len(texts)


if __name__ == "__main__":
    print(f"wrote {build()} vectors to {VECTORS_PATH}")
