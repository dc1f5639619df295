"""The shipped sample-corpus vectors: complete for the current pages, and equal to the model's."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.config import Settings
from assistant.retrieval.chunking import chunk_document
from assistant.retrieval.embedders import LocalEmbedder
from assistant.retrieval.loaders import load_file
from assistant.retrieval.sample_vectors import SAMPLE_DOCS_DIR, PrecomputedPassages, load_vectors, text_key
from assistant.retrieval.types import embedding_text


def _sample_texts() -> list[str]:
    s = Settings()
    texts = []
    for file in sorted(SAMPLE_DOCS_DIR.glob("*.md")):
        doc = load_file(file)
        texts += [embedding_text(doc.title, c)
                  for c in chunk_document(doc, max_tokens=s.chunk_tokens, overlap_tokens=s.chunk_overlap)]
    return texts


def test_every_sample_chunk_has_a_shipped_vector():
    vectors = load_vectors()
    missing = [t[:60] for t in _sample_texts() if text_key(t) not in vectors]
    assert not missing, f"stale vectors.npz: run `python -m assistant.retrieval.sample_vectors` ({missing[:3]})"


@pytest.mark.slow
def test_shipped_vectors_are_the_local_model_s():
    texts = _sample_texts()
    picks = [texts[0], texts[len(texts) // 2], texts[-1]]
    local = LocalEmbedder(Settings())
    shipped = PrecomputedPassages(local, load_vectors())
    expected = local.embed_passages(picks)
    got = shipped.embed_passages(picks)
    assert shipped.reused == 3
    assert np.all(np.sum(expected * got, axis=1) > 0.999)


def test_unknown_texts_fall_through_to_the_embedder():
    local = LocalEmbedder(Settings())
    shipped = PrecomputedPassages(local, load_vectors())
    out = shipped.embed_passages(["A sentence that is in no sample page.", _sample_texts()[0]])
    assert out.shape == (2, 384) and shipped.reused == 1
    assert float(out[0] @ local.embed_passages(["A sentence that is in no sample page."])[0]) > 0.999
