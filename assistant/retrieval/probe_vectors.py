"""Query vectors of the relevance probes (assistant/retrieval/relevance.py), shipped with the package.

Calibrating a corpus searches every probe; with these vectors that costs only the searches, not
~40 query embeddings (seconds at Render's 0.1 CPU, or paid API calls with the `hf` provider).
A probe whose text changed, or another model, is embedded as usual. Regenerate after editing
the probes: `python -m assistant.retrieval.probe_vectors`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from assistant.retrieval.sample_vectors import VECTORS_MODEL, load_vectors, text_key

if TYPE_CHECKING:
    from assistant.retrieval.embedders import Embedder

PROBE_VECTORS_PATH = Path(__file__).resolve().parent / "probe_vectors.npz"


def probe_vectors(embedder: Embedder, probes: Sequence[str]) -> list[np.ndarray]:
    """One query vector per probe: shipped when the model matches, else embedded now."""
    shipped = load_vectors(PROBE_VECTORS_PATH) if embedder.model == VECTORS_MODEL else {}
    return [shipped[text_key(p)] if text_key(p) in shipped else embedder.embed_query(p) for p in probes]


def build(path: Path = PROBE_VECTORS_PATH) -> int:
    """Embed every probe with the local model and write the vectors file."""
    from assistant.retrieval.embedders import LocalEmbedder
    from assistant.retrieval.relevance import PROBES

    embedder = LocalEmbedder()
    vectors = np.vstack([embedder.embed_query(p) for p in PROBES]).astype(np.float32)
    np.savez_compressed(path, keys=np.array([text_key(p) for p in PROBES]), vectors=vectors)
    return len(PROBES)


if __name__ == "__main__":
    print(f"wrote {build()} vectors to {PROBE_VECTORS_PATH}")
